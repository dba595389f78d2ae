// The host's model of what the agent writes: its memfd fill pattern (guest/agent/pattern.c),
// so the host predicts contents without trusting the guest, and the SHA-256 it expects.
import { createHash } from "node:crypto";

// The agent's fill pattern (guest/agent/kho-agent.c, pattern_word): byte o of a memfd with seed S
// is byte o % 8, little-endian, of splitmix64 step o / 8. It depends only on the offset, so any
// fill mode or sparse layout can be predicted page by page. Computed on 32-bit halves (BigInt
// would take a minute for 256 MiB).
const GOLDEN = [0x9e3779b9, 0x7f4a7c15] as const;
const MIX1 = [0xbf58476d, 0x1ce4e5b9] as const;
const MIX2 = [0x94d049bb, 0x133111eb] as const;

/** (ah:al * bh:bl) mod 2^64 as [hi, lo], each an unsigned 32-bit number. */
function mul64(ah: number, al: number, bh: number, bl: number): [number, number] {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  const lo = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
  const hi = a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(ah, bl) + Math.imul(al, bh);
  return [hi >>> 0, lo];
}

/** The agent's pattern bytes for `[offset, offset + length)` of a memfd filled with `seed`. */
export function memfdPattern(seed: bigint, offset: number, length: number): Uint8Array {
  const first = Math.floor(offset / 8);
  const words = Math.ceil((offset + length) / 8) - first;
  const out = new Uint8Array(words * 8);
  const view = new DataView(out.buffer);
  // z = seed + (index + 1) * GOLDEN, stepping by GOLDEN per word.
  const start = (BigInt.asUintN(64, seed) + BigInt(first + 1) * 0x9e3779b97f4a7c15n) & ((1n << 64n) - 1n);
  let zh = Number(start >> 32n);
  let zl = Number(start & 0xffffffffn);
  for (let w = 0; w < words; w++) {
    let [h, l] = mul64(zh ^ (zh >>> 30), (zl ^ ((zl >>> 30) | (zh << 2))) >>> 0, MIX1[0], MIX1[1]);
    [h, l] = mul64(h ^ (h >>> 27), (l ^ ((l >>> 27) | (h << 5))) >>> 0, MIX2[0], MIX2[1]);
    view.setUint32(w * 8, (l ^ ((l >>> 31) | (h << 1))) >>> 0, true);
    view.setUint32(w * 8 + 4, (h ^ (h >>> 31)) >>> 0, true);
    const sum = zl + GOLDEN[1];
    zl = sum >>> 0;
    zh = (zh + GOLDEN[0] + (sum > 0xffffffff ? 1 : 0)) >>> 0;
  }
  const skip = offset - first * 8;
  return out.subarray(skip, skip + length);
}

/** How the agent laid out a memfd (its `sparse=` and `truncate=` options). */
export interface MemfdLayout {
  /** Only pages whose index is a multiple of this are written (0 or 1: all). */
  readonly sparse?: number;
  /** The agent's truncate=: smaller than the size cuts the data there (zeros after it). */
  readonly truncate?: number;
  readonly pageSize?: number;
}

/**
 * The bytes `[offset, offset + length)` of a memfd of `size` bytes the agent filled with `seed`:
 * pattern in written pages, zeros in holes and past a truncation.
 */
export function memfdModel(
  seed: bigint,
  size: number,
  layout: MemfdLayout,
  offset: number,
  length: number,
): Uint8Array {
  const page = layout.pageSize ?? 4096;
  const live = layout.truncate !== undefined && layout.truncate < size ? layout.truncate : size;
  const sparse = layout.sparse ?? 0;
  const end = Math.min(offset + length, size);
  if (sparse <= 1 && end <= live) return memfdPattern(seed, offset, end - offset);
  const out = new Uint8Array(Math.max(0, end - offset));
  for (let p = offset - (offset % page); p < end && p < live; p += page) {
    if (sparse > 1 && Math.floor(p / page) % sparse !== 0) continue;
    const from = Math.max(p, offset);
    const to = Math.min(p + page, live, end);
    if (to > from) out.set(memfdPattern(seed, from, to - from), from - offset);
  }
  return out;
}

/** SHA-256 of a memfd of `size` bytes the agent filled with `seed` (memfdModel): what the host
 *  expects, computed without the guest. */
export function memfdPatternSha256(seed: bigint, size: number, layout: MemfdLayout = {}): string {
  const hash = createHash("sha256");
  const chunk = 1 << 20;
  for (let off = 0; off < size; off += chunk)
    hash.update(memfdModel(seed, size, layout, off, Math.min(chunk, size - off)));
  return hash.digest("hex");
}
