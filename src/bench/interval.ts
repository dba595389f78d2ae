// Pure statistics for `kho bench handover`: the spread of a phase at one size, how a phase grows
// with the preserved size (least squares, overall and per repeat), and the A/B verdicts (a
// stratified bootstrap interval of the ratio of summed medians and a stratified rank permutation
// test, both Bonferroni-corrected over the phases compared). No I/O and no clock: the resamples
// come from a seeded generator, so the same samples give the same report on every host
// (test/unit/bench-interval.test.ts).
import { seededRandom } from "../util/seeded-random.js";
import type {
  ComparisonVerdict,
  HandoverMetric,
  HandoverPhase,
  PhaseComparison,
  PhaseSlope,
  Spread,
} from "./handover-types.js";
import { percentile, ratio as safeRatio } from "./stats.js";

const GiB = 2 ** 30;
/** A million 4 KiB pages, in GiB: ms per GiB times this is ms per million pages. */
const MILLION_PAGES_GIB = (1e6 * 4096) / GiB;

/** The median (p50 of stats.ts, interpolated between the middle two of an even count); NaN for
 *  no values. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** A phase's figure at one size over its repeats, as the tables show it; null without values, so
 *  a size with no sample stays visible as a gap rather than a 0. */
export function spreadOf(values: readonly number[]): Spread | null {
  if (values.length === 0) return null;
  return { n: values.length, median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

export interface LinearFit {
  readonly slope: number;
  readonly intercept: number;
  /** Coefficient of determination, 0..1; NaN when y does not vary (nothing to explain). */
  readonly r2: number;
  readonly n: number;
}

/**
 * Ordinary least squares y = slope * x + intercept: how a phase grows with the preserved size.
 * Slope and intercept are NaN with fewer than 2 distinct x (no line is determined), r2 also
 * when y has no variance.
 */
export function linearFit(points: readonly { readonly x: number; readonly y: number }[]): LinearFit {
  const n = points.length;
  if (new Set(points.map((p) => p.x)).size < 2) {
    return { slope: Number.NaN, intercept: Number.NaN, r2: Number.NaN, n };
  }
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (const p of points) {
    const dx = p.x - mx;
    const dy = p.y - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  const slope = sxy / sxx;
  const r2 = syy === 0 ? Number.NaN : Math.min(1, (sxy * sxy) / (sxx * syy));
  return { slope, intercept: my - slope * mx, r2, n };
}

/**
 * A phase's cost per preserved GiB (and per million 4 KiB pages) and its fixed part, fitted to
 * every sample; and the slope fitted to each repeat alone (repeats with fewer than 2 distinct
 * sizes left out), whose spread shows how far one run's slope can be trusted. NaN where there
 * is nothing to fit.
 */
export function phaseSlope(
  phase: HandoverPhase | HandoverMetric,
  points: readonly { readonly sizeBytes: number; readonly ms: number; readonly repeat: number }[],
): PhaseSlope {
  const toXY = (ps: typeof points) => ps.map((p) => ({ x: p.sizeBytes / GiB, y: p.ms }));
  const all = linearFit(toXY(points));
  const repeats = [...new Set(points.map((p) => p.repeat))];
  const slopes = repeats
    .map((r) => linearFit(toXY(points.filter((p) => p.repeat === r))).slope)
    .filter((s) => !Number.isNaN(s));
  return {
    phase,
    msPerGiB: all.slope,
    msPerMillionPages: all.slope * MILLION_PAGES_GIB,
    interceptMs: all.intercept,
    perRepeat: {
      min: slopes.length ? Math.min(...slopes) : Number.NaN,
      median: median(slopes),
      max: slopes.length ? Math.max(...slopes) : Number.NaN,
      n: slopes.length,
    },
  };
}

/** One size of a comparison: A's samples and B's. */
export interface Stratum {
  readonly a: readonly number[];
  readonly b: readonly number[];
}

export interface BootstrapOptions {
  /** Resamples (default 4000). */
  readonly iterations?: number;
  /** Confidence over the whole family of intervals (default 0.95). */
  readonly level?: number;
  /** The generator's seed (default 1): the same seed and samples give the same interval. */
  readonly seed?: number;
  /** How many intervals are read together (the phases compared, default 1): each gets the level
   *  1 - (1 - level) / family (Bonferroni), so all of them hold together at `level`. */
  readonly family?: number;
}

export interface BootstrapRatio {
  /** Sum over strata of B's median / the same of A's. */
  readonly ratio: number;
  /** The same sums' difference, B - A, per stratum (ms a size, on average). */
  readonly deltaMs: number;
  readonly lo: number;
  readonly hi: number;
  /** The level of this interval, after the Bonferroni correction. */
  readonly level: number;
  /** Resamples the interval is made of: those asked for, less any whose A-sum was 0. */
  readonly iterations: number;
  /** The method in one sentence, for the report. */
  readonly method: string;
}

const DEFAULT_ITERATIONS = 4000;
/** Relabellings of the rank test: its p-value's Monte Carlo error is under 0.0005 near 0.005. */
const PERMUTATIONS = 20_000;
const DEFAULT_LEVEL = 0.95;

/** 0.9875 -> "98.75%", 0.95 -> "95%". */
const percent = (x: number) => `${Number((x * 100).toFixed(2))}%`;

/** The per-interval level after Bonferroni over `family` intervals. */
const perIntervalLevel = (level: number, family: number) => 1 - (1 - level) / family;

function methodText(iterations: number, level: number, family: number): string {
  const levels =
    family > 1
      ? `${percent(perIntervalLevel(level, family))} per phase (${percent(level)} over ${family} phases, Bonferroni)`
      : `${percent(level)} interval`;
  return (
    `stratified percentile bootstrap (${iterations} resamples within each size) ` +
    `of the ratio of summed medians, ${levels}`
  );
}

function checkOptions(iterations: number, level: number, family: number): void {
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new RangeError(`bootstrap iterations ${iterations} is not a positive integer`);
  }
  if (!(level > 0 && level < 1)) throw new RangeError(`confidence level ${level} is outside (0, 1)`);
  if (!Number.isInteger(family) || family < 1) {
    throw new RangeError(`family size ${family} is not a positive integer`);
  }
}

/** `xs` drawn again with replacement, as many as it has. */
const resample = (xs: readonly number[], rand: () => number) =>
  xs.map(() => xs[Math.floor(rand() * xs.length)] ?? Number.NaN);

/**
 * How much slower B is than A on one phase, with a confidence interval: the statistic is
 * (sum over sizes of B's median) / (the same of A's), which weighs each size by its own time
 * and is not moved by one slow repeat. The interval is a percentile bootstrap stratified by
 * size: each resample redraws A's and B's samples independently, with replacement, within each
 * size, so the sizes (fixed by the design, not sampled) keep their weight. Sizes where either
 * side has no sample are left out; NaN ratio, lo and hi when none remain or A's sum is 0.
 */
export function bootstrapRatio(strata: readonly Stratum[], opts: BootstrapOptions = {}): BootstrapRatio {
  const iterations = opts.iterations ?? DEFAULT_ITERATIONS;
  const familyLevel = opts.level ?? DEFAULT_LEVEL;
  const family = opts.family ?? 1;
  checkOptions(iterations, familyLevel, family);
  const level = perIntervalLevel(familyLevel, family);
  const method = methodText(iterations, familyLevel, family);
  const nan = {
    ratio: Number.NaN,
    deltaMs: Number.NaN,
    lo: Number.NaN,
    hi: Number.NaN,
    level,
    iterations: 0,
    method,
  };

  const used = strata.filter((s) => s.a.length > 0 && s.b.length > 0);
  if (used.length === 0) return nan;
  const sumOf = (xs: readonly (readonly number[])[]) => xs.reduce((s, x) => s + median(x), 0);
  const [sumA, sumB] = [sumOf(used.map((s) => s.a)), sumOf(used.map((s) => s.b))];
  const deltaMs = (sumB - sumA) / used.length;
  const point = safeRatio(sumB, sumA);
  if (Number.isNaN(point)) return { ...nan, deltaMs };

  const rand = seededRandom(opts.seed ?? 1);
  const dist: number[] = [];
  for (let i = 0; i < iterations; i++) {
    let sumA = 0;
    let sumB = 0;
    for (const s of used) {
      sumA += median(resample(s.a, rand));
      sumB += median(resample(s.b, rand));
    }
    if (sumA !== 0) dist.push(sumB / sumA);
  }
  if (dist.length === 0) return { ...nan, ratio: point, deltaMs };
  const tail = (1 - level) / 2;
  return {
    ratio: point,
    deltaMs,
    lo: percentile(dist, 100 * tail),
    hi: percentile(dist, 100 * (1 - tail)),
    level,
    iterations: dist.length,
    method,
  };
}

/** Mid-ranks (1-based, ties share their mean rank) of `xs`. */
function midRanks(xs: readonly number[]): number[] {
  const order = xs.map((x, i) => ({ x, i })).sort((p, q) => p.x - q.x);
  const ranks = new Array<number>(xs.length).fill(0);
  for (let lo = 0; lo < order.length;) {
    let hi = lo;
    while (hi + 1 < order.length && order[hi + 1]?.x === order[lo]?.x) hi++;
    for (let k = lo; k <= hi; k++) ranks[order[k]?.i ?? 0] = (lo + hi) / 2 + 1;
    lo = hi + 1;
  }
  return ranks;
}

/**
 * Whether B's samples rank apart from A's more than chance allows: the two-sided p-value of a
 * stratified rank permutation test (van Elteren's statistic: per size, B's rank sum among that
 * size's samples over (n + 1), summed over the sizes; its null distribution from random
 * relabellings within each size, seeded). Unlike the bootstrap interval of medians, whose
 * resamples of 4 values are too few to show their own spread, it keeps its level however few
 * repeats there are: with 4 a side and one size it cannot go below 1/35, so a lone size with so
 * few repeats never gets a verdict. Sizes missing a side are left out; 1 when none remain.
 */
export function rankPermutationP(
  strata: readonly Stratum[],
  opts: { readonly iterations?: number; readonly seed?: number } = {},
): number {
  const used = strata.filter((s) => s.a.length > 0 && s.b.length > 0);
  if (used.length === 0) return 1;
  const iterations = opts.iterations ?? PERMUTATIONS;
  const ranked = used.map((s) => ({ ranks: midRanks([...s.a, ...s.b]), nb: s.b.length }));
  // B's share of each size's ranks, centred on its mean under no difference (nb / 2)
  const statistic = (pick: (r: { ranks: number[]; nb: number }) => number[]) =>
    Math.abs(
      ranked.reduce((t, r) => t + pick(r).reduce((x, y) => x + y, 0) / (r.ranks.length + 1) - r.nb / 2, 0),
    );
  const observed = statistic((r) => r.ranks.slice(r.ranks.length - r.nb));
  const rand = seededRandom(opts.seed ?? 1);
  const drawB = (r: { ranks: number[]; nb: number }) => {
    const pool = [...r.ranks];
    for (let k = 0; k < r.nb; k++) {
      const j = k + Math.floor(rand() * (pool.length - k));
      [pool[k], pool[j]] = [pool[j] as number, pool[k] as number];
    }
    return pool.slice(0, r.nb);
  };
  let asExtreme = 0;
  for (let i = 0; i < iterations; i++) if (statistic(drawB) >= observed - 1e-9) asExtreme++;
  return (asExtreme + 1) / (iterations + 1);
}

/**
 * The verdict on one ratio: "slower" or "faster" only when the interval excludes 1, the rank
 * test's p-value is at most `alpha` (when given) AND the ratio is more than `minEffect` away
 * from 1, so a real but negligible change (a tight interval
 * from many repeats) is not reported as a regression; anything else, NaN included, is "no
 * difference".
 */
export function verdictOf(
  r: {
    readonly ratio: number;
    readonly lo: number;
    readonly hi: number;
    readonly deltaMs?: number;
    /** The rank test's p-value (rankPermutationP): above `alpha`, no difference. */
    readonly p?: number;
  },
  minEffect = DEFAULT_MIN_EFFECT,
  minEffectMs = 0,
  alpha = 1,
): ComparisonVerdict {
  // A few ms either way is no difference however steady: a 7 ms phase 3 ms shorter is noise of
  // the guest's printk and the host's scheduling, not a kernel change worth a verdict.
  if (r.deltaMs !== undefined && Math.abs(r.deltaMs) < minEffectMs) return "no difference";
  // The bootstrap interval of 4 medians is too narrow (an A/A run got "faster", 0.87 with
  // 0.66-0.97); the rank test must agree that B's samples stand apart.
  if (r.p !== undefined && !(r.p <= alpha)) return "no difference";
  if (r.lo > 1 && r.ratio > 1 + minEffect) return "slower";
  if (r.hi < 1 && r.ratio < 1 - minEffect) return "faster";
  return "no difference";
}

/**
 * comparePhases' defaults: a ratio within 1 ± 0.25, or a difference under 5 ms a size, is no
 * difference. 0.25, not 0.1: two A/A runs of the e2e test on this shared 2-core CI host found
 * 0.89 (x86_64 blackout, --repeat 4) and 1.23 (arm64 userspace, interval 1.05-1.43, --repeat 8)
 * with the interval off 1 and the rank test agreeing: bursts of host load that hit one side's
 * guests. TCG guests on a busy host cannot tell such effects from noise; --min-effect 0.1 asks
 * for more on a quiet host.
 */
export const DEFAULT_MIN_EFFECT = 0.25;
export const DEFAULT_MIN_EFFECT_MS = 5;

export interface PhaseComparisons {
  readonly method: string;
  /** The level of each interval, after the Bonferroni correction over the phases compared. */
  readonly level: number;
  readonly minEffect: number;
  readonly minEffectMs: number;
  readonly phases: PhaseComparison[];
}

/**
 * B against A on every phase of one arch and shape: a bootstrap interval and a rank test per
 * phase, both Bonferroni over the phases that have data (at least one size with samples on both
 * sides; the others are left out), and its verdict. Every phase uses the same seed, so a phase's
 * interval depends on its own samples only, not on which other phases were compared.
 */
export function comparePhases(
  phases: readonly { readonly phase: PhaseComparison["phase"]; readonly strata: readonly Stratum[] }[],
  opts: {
    readonly level?: number;
    readonly minEffect?: number;
    /** A difference of the medians under this many ms (per size, on average) is no difference. */
    readonly minEffectMs?: number;
    readonly iterations?: number;
    readonly seed?: number;
  } = {},
): PhaseComparisons {
  const iterations = opts.iterations ?? DEFAULT_ITERATIONS;
  const familyLevel = opts.level ?? DEFAULT_LEVEL;
  const minEffect = opts.minEffect ?? DEFAULT_MIN_EFFECT;
  const minEffectMs = opts.minEffectMs ?? DEFAULT_MIN_EFFECT_MS;
  const withData = phases.filter((p) => p.strata.some((s) => s.a.length > 0 && s.b.length > 0));
  const family = Math.max(1, withData.length);
  checkOptions(iterations, familyLevel, family);
  return {
    method:
      `${methodText(iterations, familyLevel, family)}; a verdict also needs a stratified rank ` +
      `permutation test (van Elteren, ${PERMUTATIONS} relabellings within each size) at that level`,
    level: perIntervalLevel(familyLevel, family),
    minEffect,
    minEffectMs,
    phases: withData.map((p) => {
      const r = bootstrapRatio(p.strata, { iterations, level: familyLevel, family, seed: opts.seed });
      const pValue = rankPermutationP(p.strata, { seed: opts.seed ?? 1 });
      return {
        phase: p.phase,
        ratio: r.ratio,
        lo: r.lo,
        hi: r.hi,
        deltaMs: r.deltaMs,
        p: pValue,
        verdict: verdictOf({ ...r, p: pValue }, minEffect, minEffectMs, (1 - familyLevel) / family),
      };
    }),
  };
}
