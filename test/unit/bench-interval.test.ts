import { describe, expect, it } from "vitest";
import {
  bootstrapRatio,
  comparePhases,
  rankPermutationP,
  linearFit,
  median,
  phaseSlope,
  spreadOf,
  verdictOf,
} from "../../src/bench/interval.js";
import { seededRandom } from "../../src/util/seeded-random.js";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

describe("median and spreadOf", () => {
  it("median interpolates an even count and is NaN without values", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it("spreadOf gives n, median, min, max, or null without values", () => {
    expect(spreadOf([30, 10, 20, 100])).toEqual({ n: 4, median: 25, min: 10, max: 100 });
    expect(spreadOf([7])).toEqual({ n: 1, median: 7, min: 7, max: 7 });
    expect(spreadOf([])).toBeNull();
  });
});

describe("linearFit (ordinary least squares)", () => {
  it("recovers an exact line", () => {
    const fit = linearFit([0, 1, 2, 5, 10].map((x) => ({ x, y: 3 * x + 2 })));
    expect(fit.slope).toBeCloseTo(3, 12);
    expect(fit.intercept).toBeCloseTo(2, 12);
    expect(fit.r2).toBeCloseTo(1, 12);
    expect(fit.n).toBe(5);
  });

  it("matches a fit worked by hand", () => {
    // x̄ = 1.5, ȳ = 2.75; Sxx = 5, Sxy = 5.5, Syy = 8.75: slope 1.1, intercept 2.75 - 1.1 * 1.5
    // = 1.1, r² = 5.5² / (5 * 8.75) = 121/175.
    const fit = linearFit([
      { x: 0, y: 1 },
      { x: 1, y: 3 },
      { x: 2, y: 2 },
      { x: 3, y: 5 },
    ]);
    expect(fit.slope).toBeCloseTo(1.1, 12);
    expect(fit.intercept).toBeCloseTo(1.1, 12);
    expect(fit.r2).toBeCloseTo(121 / 175, 12);
  });

  it("is NaN with fewer than 2 distinct x, and r2 is NaN when y does not vary", () => {
    for (const pts of [[], [{ x: 1, y: 2 }], [1, 2, 3].map((y) => ({ x: 4, y }))]) {
      const fit = linearFit(pts);
      expect(fit.slope).toBeNaN();
      expect(fit.intercept).toBeNaN();
      expect(fit.r2).toBeNaN();
    }
    const flat = linearFit([1, 2, 3].map((x) => ({ x, y: 7 })));
    expect(flat.slope).toBe(0);
    expect(flat.intercept).toBe(7);
    expect(flat.r2).toBeNaN();
  });
});

describe("phaseSlope", () => {
  const sizes = [0, 64 * MiB, 256 * MiB, GiB];
  const points = [1, 2].flatMap((repeat) =>
    sizes.map((sizeBytes) => ({
      sizeBytes,
      repeat,
      ms: 100 + (repeat === 1 ? 50 : 70) * (sizeBytes / GiB),
    })),
  );

  it("fits ms per GiB over every sample and each repeat alone", () => {
    const s = phaseSlope("mm-init", points);
    expect(s.phase).toBe("mm-init");
    // Both repeats at the same sizes: the pooled slope is the mean of 50 and 70.
    expect(s.msPerGiB).toBeCloseTo(60, 9);
    expect(s.interceptMs).toBeCloseTo(100, 9);
    // 1e6 pages of 4 KiB are 3.814697265625 GiB.
    expect(s.msPerMillionPages).toBeCloseTo(60 * 3.814697265625, 9);
    expect(s.perRepeat.n).toBe(2);
    expect(s.perRepeat.min).toBeCloseTo(50, 9);
    expect(s.perRepeat.median).toBeCloseTo(60, 9);
    expect(s.perRepeat.max).toBeCloseTo(70, 9);
  });

  it("leaves out repeats with fewer than 2 distinct sizes, and is NaN without a line", () => {
    const s = phaseSlope("mm-init", [
      ...points.filter((p) => p.repeat === 1),
      { sizeBytes: GiB, repeat: 3, ms: 1000 },
      { sizeBytes: GiB, repeat: 3, ms: 1001 },
    ]);
    expect(s.perRepeat.n).toBe(1);
    expect(s.perRepeat.max).toBeCloseTo(50, 9);

    const none = phaseSlope("blackout", [{ sizeBytes: GiB, repeat: 1, ms: 5 }]);
    expect(none.msPerGiB).toBeNaN();
    expect(none.msPerMillionPages).toBeNaN();
    expect(none.perRepeat).toEqual({ min: NaN, median: NaN, max: NaN, n: 0 });
  });
});

describe("bootstrapRatio (stratified percentile bootstrap)", () => {
  const a = [
    [95, 100, 105, 98, 102],
    [190, 205, 200, 210, 195],
    [390, 400, 420, 380, 410],
  ];

  it("identical samples give ratio 1 and an interval containing 1", () => {
    const r = bootstrapRatio(a.map((xs) => ({ a: xs, b: xs })));
    expect(r.ratio).toBe(1);
    expect(r.lo).toBeLessThanOrEqual(1);
    expect(r.hi).toBeGreaterThanOrEqual(1);
    expect(r.level).toBe(0.95);
    expect(r.iterations).toBe(4000);
  });

  it("B exactly twice A gives ratio 2 and an interval around 2 that excludes 1", () => {
    const r = bootstrapRatio(a.map((xs) => ({ a: xs, b: xs.map((x) => 2 * x) })));
    expect(r.ratio).toBe(2);
    expect(r.lo).toBeLessThan(2);
    expect(r.hi).toBeGreaterThan(2);
    expect(r.lo).toBeGreaterThan(1.5);
    expect(r.hi).toBeLessThan(2.5);
  });

  it("clearly separated distributions give lo > 1", () => {
    const r = bootstrapRatio([
      { a: [10, 12, 11, 13, 9], b: [15, 16, 14, 17, 15] },
      { a: [50, 52, 49, 51, 55], b: [60, 61, 58, 64, 62] },
    ]);
    expect(r.ratio).toBeCloseTo((15 + 61) / (11 + 51), 12);
    expect(r.lo).toBeGreaterThan(1);
  });

  it("is reproducible from its seed; another seed moves the interval, not the ratio", () => {
    const strata = a.map((xs) => ({ a: xs, b: xs.map((x) => x * 1.1 + 3) }));
    const one = bootstrapRatio(strata, { seed: 5 });
    expect(bootstrapRatio(strata, { seed: 5 })).toEqual(one);
    const other = bootstrapRatio(strata, { seed: 6 });
    expect(other.ratio).toBe(one.ratio);
    expect([other.lo, other.hi]).not.toEqual([one.lo, one.hi]);
  });

  it("is NaN without usable strata or when A's medians sum to 0", () => {
    for (const strata of [[], [{ a: [], b: [1, 2] }], [{ a: [0, 0, 1], b: [3, 4, 5] }]]) {
      const r = bootstrapRatio(strata);
      expect(r.ratio).toBeNaN();
      expect(r.lo).toBeNaN();
      expect(r.hi).toBeNaN();
    }
  });

  it("leaves out strata with a side missing", () => {
    // With the first stratum counted, B's sum would be 7 + 2.
    const r = bootstrapRatio([
      { a: [], b: [7] },
      { a: [1, 1, 1], b: [2, 2, 2] },
    ]);
    expect(r.ratio).toBe(2);
    expect(r.lo).toBe(2);
    expect(r.hi).toBe(2);
  });

  it("skips resamples whose A-sum is 0", () => {
    // A's median is 1, but a resample drawing three or more 0s has median 0.
    const r = bootstrapRatio([{ a: [0, 0, 1, 1, 1], b: [2, 2, 2, 2, 2] }], { iterations: 1000 });
    expect(r.ratio).toBe(2);
    expect(r.iterations).toBeGreaterThan(0);
    expect(r.iterations).toBeLessThan(1000);
    expect(Number.isFinite(r.hi)).toBe(true);
  });

  it("applies Bonferroni over the family: a higher level, a wider interval, said in the method", () => {
    const strata = a.map((xs) => ({ a: xs, b: xs.map((x) => x * 1.2) }));
    const single = bootstrapRatio(strata);
    const four = bootstrapRatio(strata, { family: 4 });
    expect(four.level).toBeCloseTo(0.9875, 12);
    expect(four.lo).toBeLessThanOrEqual(single.lo);
    expect(four.hi).toBeGreaterThanOrEqual(single.hi);
    expect(four.hi - four.lo).toBeGreaterThan(single.hi - single.lo);
    expect(four.method).toBe(
      "stratified percentile bootstrap (4000 resamples within each size) of the ratio of summed medians, " +
        "98.75% per phase (95% over 4 phases, Bonferroni)",
    );
    expect(single.method).toContain("95% interval");
  });

  it("refuses nonsense options", () => {
    expect(() => bootstrapRatio([], { level: 1 })).toThrow(RangeError);
    expect(() => bootstrapRatio([], { iterations: 0 })).toThrow(RangeError);
    expect(() => bootstrapRatio([], { family: 0 })).toThrow(RangeError);
  });

  describe("on synthetic experiments (3 sizes x 5 repeats, ~10% normal noise)", () => {
    // Box-Muller from the seeded generator: the same experiments on every run.
    const experiments = (seed: number, effect: number, count: number) => {
      const rand = seededRandom(seed);
      const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
      const draw = (mu: number) => Array.from({ length: 5 }, () => mu * (1 + 0.1 * normal()));
      return Array.from({ length: count }, () =>
        [100, 200, 400].map((mu) => ({ a: draw(mu), b: draw(mu * effect) })),
      );
    };
    const containsOne = (all: ReturnType<typeof experiments>) =>
      all.filter((strata, i) => {
        const r = bootstrapRatio(strata, { iterations: 500, seed: i + 1 });
        return r.lo <= 1 && r.hi >= 1;
      }).length / all.length;

    it("covers the true ratio 1 at least about as often as the level says", () => {
      // A and B from the same distribution. Over 10 seeds of 200 experiments each the 95%
      // intervals contained 1 in 96% to 99.5% of them: with n = 5 the resampled median only takes
      // sample values and A and B are redrawn independently, which makes the interval a little
      // wide (conservative). 0.9 leaves room for that spread (a binomial sd of ~1.5 points) and
      // still fails an interval that is too narrow (e.g. a 50% one covers ~0.5).
      expect(containsOne(experiments(977, 1, 200))).toBeGreaterThanOrEqual(0.9);
    });

    it("still excludes 1 when B is 30% slower", () => {
      // Observed: at most 1 experiment in 200 contained 1, over the same 10 seeds.
      expect(containsOne(experiments(977, 1.3, 200))).toBeLessThanOrEqual(0.05);
    });
  });
});

describe("rankPermutationP (stratified rank permutation test)", () => {
  it("is 1 for the same samples and at its floor when every B is above every A", () => {
    expect(rankPermutationP([{ a: [1, 2, 3, 4], b: [1, 2, 3, 4] }])).toBe(1);
    // one size, 4 a side: 2 of the 70 labellings are as extreme, p = 1/35 at best
    const one = rankPermutationP([{ a: [1, 2, 3, 4], b: [5, 6, 7, 8] }]);
    expect(one).toBeGreaterThan(0.02);
    expect(one).toBeLessThan(0.04);
    // two sizes: 2 in 70 x 70
    const two = rankPermutationP([
      { a: [1, 2, 3, 4], b: [5, 6, 7, 8] },
      { a: [10, 20, 30, 40], b: [50, 60, 70, 80] },
    ]);
    expect(two).toBeLessThan(0.002);
    // the direction does not matter (two-sided), and sizes missing a side are left out
    expect(
      rankPermutationP([
        { a: [5, 6, 7, 8], b: [1, 2, 3, 4] },
        { a: [50, 60, 70, 80], b: [10, 20, 30, 40] },
        { a: [1], b: [] },
      ]),
    ).toBeCloseTo(two, 2);
    expect(rankPermutationP([{ a: [1], b: [] }])).toBe(1);
  });

  it("is seeded: the same samples and seed give the same p-value", () => {
    const strata = [{ a: [3, 1, 4, 1, 5], b: [9, 2, 6, 5, 3] }];
    expect(rankPermutationP(strata, { seed: 3 })).toBe(rankPermutationP(strata, { seed: 3 }));
  });

  it("keeps an A/A run from CI out of a verdict that the bootstrap alone gave", () => {
    // arm64 readback of the same kernel against itself, --sizes 0,64M --repeat 4 (readback has
    // no samples at size 0): the bootstrap said "faster", 0.87 with 0.66-0.97 at 99.5%
    const strata = [{ a: [336, 279, 234, 230], b: [222, 223, 222, 225] }];
    const boot = bootstrapRatio(strata, { family: 10 });
    expect(verdictOf(boot, 0.1, 5)).toBe("faster");
    const res = comparePhases([
      { phase: "readback", strata },
      ...["shutdown", "purgatory", "early-boot", "mm-init", "kernel-init", "userspace", "luo-retrieve"].map(
        (phase) => ({ phase: phase as "mm-init", strata: [{ a: [1, 2, 3, 4], b: [1, 2, 3, 4] }] }),
      ),
      { phase: "deferred-pages", strata: [{ a: [1, 2, 3, 4], b: [1, 2, 3, 4] }] },
      { phase: "blackout", strata: [{ a: [1, 2, 3, 4], b: [1, 2, 3, 4] }] },
    ]);
    expect(res.phases[0]?.p).toBeGreaterThan(0.005);
    expect(res.phases[0]?.verdict).toBe("no difference");
  });
});

describe("verdictOf", () => {
  it("needs the rank test's p-value at most alpha when one is given", () => {
    expect(verdictOf({ ratio: 1.5, lo: 1.2, hi: 1.8, p: 0.03 }, 0.1, 0, 0.005)).toBe("no difference");
    expect(verdictOf({ ratio: 1.5, lo: 1.2, hi: 1.8, p: 0.004 }, 0.1, 0, 0.005)).toBe("slower");
    expect(verdictOf({ ratio: 1.5, lo: 1.2, hi: 1.8, p: Number.NaN }, 0.1, 0, 0.005)).toBe("no difference");
  });

  it("calls slower or faster only when the interval excludes 1 and the effect is above minEffect", () => {
    expect(verdictOf({ ratio: 1.2, lo: 1.05, hi: 1.4 }, 0.1)).toBe("slower");
    expect(verdictOf({ ratio: 0.8, lo: 0.7, hi: 0.95 }, 0.1)).toBe("faster");
    // The default: within 1 ± 0.25 (the A/A false effects seen in CI, 0.89 and 1.23, among them).
    expect(verdictOf({ ratio: 1.23, lo: 1.05, hi: 1.43 })).toBe("no difference");
    expect(verdictOf({ ratio: 0.89, lo: 0.76, hi: 0.98 })).toBe("no difference");
    expect(verdictOf({ ratio: 1.3, lo: 1.05, hi: 1.5 })).toBe("slower");
    expect(verdictOf({ ratio: 0.7, lo: 0.6, hi: 0.9 })).toBe("faster");
    // Interval excludes 1, but within 1 ± 0.1.
    expect(verdictOf({ ratio: 1.05, lo: 1.01, hi: 1.1 }, 0.1)).toBe("no difference");
    expect(verdictOf({ ratio: 0.95, lo: 0.9, hi: 0.99 }, 0.1)).toBe("no difference");
    expect(verdictOf({ ratio: 1.05, lo: 1.01, hi: 1.1 }, 0.01)).toBe("slower");
    expect(verdictOf({ ratio: 0.95, lo: 0.9, hi: 0.99 }, 0.01)).toBe("faster");
    // The bounds are strict.
    expect(verdictOf({ ratio: 1.5, lo: 1, hi: 2 })).toBe("no difference");
    expect(verdictOf({ ratio: 0.5, lo: 0.2, hi: 1 })).toBe("no difference");
    expect(verdictOf({ ratio: 1.25, lo: 1.05, hi: 1.4 }, 0.25)).toBe("no difference");
    // Large effect, but the interval contains 1.
    expect(verdictOf({ ratio: 1.5, lo: 0.9, hi: 2.1 })).toBe("no difference");
    expect(verdictOf({ ratio: NaN, lo: NaN, hi: NaN })).toBe("no difference");
  });
});

describe("comparePhases", () => {
  const base = [
    [95, 100, 105, 98, 102],
    [390, 400, 420, 380, 410],
  ];
  const scaled = (k: number) => base.map((xs) => ({ a: xs, b: xs.map((x) => x * k) }));

  it("Bonferroni over the phases with data; phases without data are left out", () => {
    const res = comparePhases([
      { phase: "mm-init", strata: scaled(2) },
      { phase: "kernel-init", strata: scaled(0.5) },
      { phase: "userspace", strata: scaled(1) },
      { phase: "blackout", strata: scaled(1.02) },
      { phase: "readback", strata: [] },
      { phase: "luo-retrieve", strata: [{ a: [1, 2], b: [] }] },
    ]);
    expect(res.level).toBeCloseTo(1 - 0.05 / 4, 12);
    expect(res.level).toBeCloseTo(0.9875, 12);
    expect(res.minEffect).toBe(0.25);
    expect(res.method).toContain("98.75% per phase (95% over 4 phases, Bonferroni)");
    expect(res.phases.map((p) => [p.phase, p.verdict])).toEqual([
      ["mm-init", "slower"],
      ["kernel-init", "faster"],
      ["userspace", "no difference"],
      ["blackout", "no difference"],
    ]);
    const mm = bootstrapRatio(scaled(2), { family: 4 });
    expect(res.phases[0]).toEqual({
      phase: "mm-init",
      ratio: mm.ratio,
      lo: mm.lo,
      hi: mm.hi,
      // medians 100 and 400, doubled: 100 and 400 ms more, 250 on average
      deltaMs: 250,
      p: expect.any(Number) as number,
      verdict: "slower",
    });
    // every B sample above every A one in both sizes: as far apart as ranks go
    expect(res.phases[0]?.p).toBeLessThan(0.001);
    expect(res.method).toContain("stratified rank permutation test (van Elteren, 20000 relabellings");
  });

  it("a steady difference of a few ms is no difference (minEffectMs), unless asked otherwise", () => {
    // a 7 ms phase, 3 ms shorter every time: the interval excludes 1 and the ratio is 0.57
    const short = [{ a: [7, 7.1, 6.9, 7, 7], b: [4, 4.1, 3.9, 4, 4] }];
    const dflt = comparePhases([{ phase: "shutdown", strata: short }]);
    expect(dflt.minEffectMs).toBe(5);
    expect(dflt.phases[0]?.deltaMs).toBeCloseTo(-3, 9);
    expect(dflt.phases[0]?.verdict).toBe("no difference");
    expect(comparePhases([{ phase: "shutdown", strata: short }], { minEffectMs: 0 }).phases[0]?.verdict).toBe(
      "faster",
    );
  });

  it("does not correct a single phase, and passes level and minEffect on", () => {
    const one = comparePhases([{ phase: "mm-init", strata: scaled(1.05) }], { level: 0.9, minEffect: 0.01 });
    expect(one.level).toBeCloseTo(0.9, 12);
    expect(one.minEffect).toBe(0.01);
    expect(one.phases).toHaveLength(1);
    expect(one.phases[0]?.verdict).toBe("slower");
    expect(comparePhases([]).phases).toEqual([]);
  });
});
