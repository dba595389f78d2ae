// Which physical range overlaps an address range, for tens of thousands of ranges: a shared
// guest's decoded KHO map holds every member's preserved chunks (70k for a 256 MiB memfd), and
// matching each chunk against each claimed page one by one took seconds.

export interface PhysRange {
  readonly start: bigint;
  /** Exclusive. */
  readonly end: bigint;
}

export class RangeIndex<T extends PhysRange> {
  private readonly sorted: readonly T[];
  /** maxEnd[i]: the largest end among sorted[0..i], so a search left can stop early. */
  private readonly maxEnd: readonly bigint[];

  constructor(ranges: readonly T[]) {
    this.sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    let max = -1n;
    this.maxEnd = this.sorted.map((r) => (max = r.end > max ? r.end : max));
  }

  /** A range overlapping [start, end), the one starting last if several do; undefined if none. */
  find(start: bigint, end: bigint): T | undefined {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.sorted[mid] as T).start < end) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo - 1; i >= 0 && (this.maxEnd[i] as bigint) > start; i--) {
      const r = this.sorted[i] as T;
      if (r.end > start) return r;
    }
    return undefined;
  }
}
