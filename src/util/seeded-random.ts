// A small seeded pseudo-random generator, so choices made "at random" (the corruption matrix's
// placements, the bench's bootstrap resamples) are the same on every host and every run.

/** mulberry32: the case's choices from its seed, the same on every host. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
