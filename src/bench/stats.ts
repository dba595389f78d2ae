// Pure statistics for `npm run bench`: percentiles, per-phase summaries, overhead ratios.
// No I/O here, so everything is unit-tested (test/unit/bench-stats.test.ts).

export interface Summary {
  readonly n: number;
  readonly min: number;
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
  readonly mean: number;
}

/**
 * The p-th percentile (0..100) by linear interpolation between closest ranks (the "R-7" rule,
 * numpy's and spreadsheets' default): p50 of [1, 2, 3, 4] is 2.5, p95 of 3 samples lies
 * between the 2nd and 3rd. NaN for no samples.
 */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile ${p} is outside 0..100`);
  if (values.some((v) => !Number.isFinite(v))) throw new RangeError("percentile of a non-finite sample");
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] ?? Number.NaN;
  const b = sorted[hi] ?? Number.NaN;
  return a + (b - a) * (rank - lo);
}

export function summarize(values: readonly number[]): Summary {
  const n = values.length;
  return {
    n,
    min: n ? Math.min(...values) : Number.NaN,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    max: n ? Math.max(...values) : Number.NaN,
    mean: n ? values.reduce((s, v) => s + v, 0) / n : Number.NaN,
  };
}

/**
 * One summary per phase over several samples (each a phase -> ms record). A phase missing from
 * a sample is left out of that phase's figures, not counted as 0. Phases keep the order in
 * which they first appear.
 */
export function summarizePhases(
  samples: readonly Readonly<Record<string, number>>[],
): Record<string, Summary> {
  const names: string[] = [];
  for (const s of samples) for (const k of Object.keys(s)) if (!names.includes(k)) names.push(k);
  return Object.fromEntries(
    names.map((k) => [k, summarize(samples.flatMap((s) => (s[k] === undefined ? [] : [s[k]])))]),
  );
}

/** numerator / denominator, NaN when the denominator is 0 or either side is not a number. */
export function ratio(numerator: number, denominator: number): number {
  if (!Number.isFinite(numerator) || !Number.isFinite(denominator) || denominator === 0) return Number.NaN;
  return numerator / denominator;
}

export interface Overhead {
  /** harness p50 / raw p50. */
  readonly p50: number;
  /** harness p95 / raw p95. */
  readonly p95: number;
  /** Median of the per-repeat ratios (repeat i of the harness over repeat i of the raw flow),
   *  which cancels load that changed between repeats; NaN without pairs. */
  readonly pairedP50: number;
}

/** `pairs` are [harness, raw] totals of the same repeat. */
export function overhead(
  harness: readonly number[],
  raw: readonly number[],
  pairs: readonly (readonly [number, number])[] = [],
): Overhead {
  const paired = pairs.map(([h, r]) => ratio(h, r)).filter((x) => Number.isFinite(x));
  return {
    p50: ratio(percentile(harness, 50), percentile(raw, 50)),
    p95: ratio(percentile(harness, 95), percentile(raw, 95)),
    pairedP50: percentile(paired, 50),
  };
}

/** Milliseconds between consecutive named instants: [["boot", 0], ["kexec", 120]...] gives
 *  each name the time from its own instant to the next one's; the last instant ends the list. */
export function phasesBetween(marks: readonly (readonly [string, number])[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i + 1 < marks.length; i++) {
    const [name, at] = marks[i] ?? ["", 0];
    const next = marks[i + 1]?.[1] ?? at;
    out[name] = Math.round(next - at);
  }
  return out;
}
