// `kho bench handover`: what a handover costs the kernel as preserved memory grows. Per repeat,
// arch and shape, one guest per kernel (A, and B with --compare-kernel, in alternating order so
// that drift in the host's load hits both alike) boots once and kexecs once per size, in a
// shuffled order (src/scenarios/handover-cost.ts). Its facts become samples; the samples become
// per-size spreads, fitted slopes and, with B, a verdict per phase (interval.ts).
import { mkdir } from "node:fs/promises";
import { cpus, freemem, hostname, totalmem } from "node:os";
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import type { Fact } from "../api/facts.js";
import { HarnessError } from "../errors.js";
import { BAD_INPUT_EXIT } from "../report/schema.js";
import { isKernelVariant } from "../kernel/variants.js";
import { runScenarios, type RunOptions } from "../orchestrate/runner.js";
import { handoverCostScenario, shapeParts, sizeArg } from "../scenarios/handover-cost.js";
import { seededRandom } from "../util/seeded-random.js";
import type { Logger } from "../util/log.js";
import { comparePhases, DEFAULT_MIN_EFFECT, phaseSlope, spreadOf, median } from "./interval.js";
import {
  HANDOVER_BENCH_SCHEMA,
  HANDOVER_COLUMNS,
  type BenchKernel,
  type HandoverBenchReport,
  type HandoverComparison,
  type HandoverFigures,
  type HandoverMemory,
  type HandoverSample,
  type HandoverShape,
  type MemoryAtSize,
  type HandoverMetric,
  type HandoverPhase,
  type PhaseSlope,
  type Spread,
} from "./handover-types.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
export const DEFAULT_SIZES = [0, 64 * MiB, 256 * MiB, GiB] as const;
export const DEFAULT_REPEAT = 3;
/** The test module keeps at most 2048 blocks (guest/kmod): order-0 folios up to 8 MiB. */
const MODULE_MAX_BLOCKS = 2048;

/** "0,64M,256M,1G" -> bytes; one sentence for anything else. */
export function parseSizes(text: string): number[] {
  const sizes = text.split(",").map((part) => {
    const m = /^\s*(\d+)\s*([KMG]?)i?B?\s*$/i.exec(part);
    if (!m)
      throw new HarnessError(`--sizes: "${part}" is not a size (examples: 0, 64M, 1G)`, [], BAD_INPUT_EXIT);
    const unit = { "": 1, K: 1024, M: MiB, G: GiB }[(m[2] ?? "").toUpperCase()] ?? 1;
    return Number(m[1]) * unit;
  });
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/** Sizes the shape cannot preserve as asked, in one sentence; undefined when all can be. */
export function sizeProblem(shape: HandoverShape, sizes: readonly number[]): string | undefined {
  for (const size of sizes) {
    const { memfd, order, folios } = shapeParts(shape, size);
    const unit = (folios > 0 ? 4096 << order : 4096) * (shape === "mixed" ? 2 : 1);
    if (size % unit !== 0 || !Number.isInteger(memfd) || !Number.isInteger(folios))
      return `${shape} preserves in units of ${unit / 1024} KiB: ${size} bytes is not a multiple`;
    if (folios > MODULE_MAX_BLOCKS)
      return `${shape} at ${size / MiB} MiB needs ${folios} test-module blocks, more than its ${MODULE_MAX_BLOCKS} (order-0 folios up to ${(MODULE_MAX_BLOCKS * 4) / 1024} MiB; the memfd shape preserves order-0 folios at any size)`;
  }
  return undefined;
}

/** Guest RAM for the biggest size: the preserved memory, a quarter more, and the base guest's. */
export function guestMemoryMiB(sizes: readonly number[]): number {
  const biggest = Math.max(0, ...sizes);
  return Math.max(1024, 768 + Math.ceil((biggest * 1.25) / MiB / 256) * 256);
}

export interface KernelSide {
  /** "default" (the harness's build), a variant name, or a prebuilt image's path. */
  readonly spec: string;
  readonly append?: string;
}

export interface HandoverBenchOptions {
  readonly arches: readonly ArchName[];
  readonly shapes: readonly HandoverShape[];
  readonly sizes: readonly number[];
  readonly repeat: number;
  readonly a: KernelSide;
  readonly b?: KernelSide;
  readonly minEffect?: number;
  readonly minEffectMs?: number;
  /** Each guest run's artifacts go under it. */
  readonly outDir: string;
  readonly log: Logger;
  /** Seed of the size order (reproducible). */
  readonly seed?: number;
  /** Guests at once (default 1: one guest's timings undisturbed by another's). */
  readonly jobs?: number;
}

function kernelRunOptions(side: KernelSide): Pick<RunOptions, "kernel" | "variant"> {
  if (side.spec === "default") return {};
  if (isKernelVariant(side.spec)) return { variant: side.spec };
  return { kernel: side.spec };
}

/** Fisher-Yates with the bench's seeded generator. */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

const MEMORY_KEYS = [
  "preservedPages",
  "radixPages",
  "luoPages",
  "scratchBytes",
  "reservedKiBBefore",
  "reservedKiBAfter",
  "memTotalKiBAfter",
] as const satisfies readonly (keyof HandoverMemory)[];

/** Samples of one guest run from its facts; LUO's pages are what the tree marks beyond the
 *  memfd's own pages and the nothing-preserved kexec's (size 0, when the sizes have it). */
export function samplesOf(
  facts: readonly Fact[],
  where: Pick<HandoverSample, "arch" | "kernel" | "shape" | "repeat">,
): HandoverSample[] {
  const costs = facts.flatMap((f) => (f.kind === "handover-cost" ? [f] : []));
  const baseline = costs.find((c) => c.sizeBytes === 0)?.memory.preservedPages;
  return costs.map((c) => {
    const mem = c.memory;
    const memfdPages = shapeParts(where.shape, c.sizeBytes).memfd / 4096;
    const given = Object.fromEntries(MEMORY_KEYS.flatMap((k) => (k in mem ? [[k, mem[k]]] : [])));
    const memory: HandoverMemory = {
      ...given,
      preservedPages: mem.preservedPages ?? 0,
      radixPages: mem.radixPages ?? 0,
      ...(memfdPages > 0 && baseline !== undefined && mem.preservedPages !== undefined
        ? { luoPages: mem.preservedPages - baseline - memfdPages - folioPages(where.shape, c.sizeBytes) }
        : {}),
    };
    return { ...where, sizeBytes: c.sizeBytes, phasesMs: { ...c.phasesMs }, memory };
  });
}

function folioPages(shape: HandoverShape, size: number): number {
  const { order, folios } = shapeParts(shape, size);
  return folios * 2 ** order;
}

/** Per-size spreads, memory medians and slopes of one arch, shape and kernel. */
export function figuresOf(samples: readonly HandoverSample[]): HandoverFigures | undefined {
  const first = samples[0];
  if (!first) return undefined;
  const sizes = [...new Set(samples.map((s) => s.sizeBytes))].sort((a, b) => a - b);
  const phases: Partial<Record<HandoverPhase | HandoverMetric, (Spread | null)[]>> = {};
  const slopes: PhaseSlope[] = [];
  for (const phase of HANDOVER_COLUMNS) {
    const points = samples.flatMap((s) => {
      const ms = s.phasesMs[phase];
      return ms !== undefined && Number.isFinite(ms)
        ? [{ sizeBytes: s.sizeBytes, ms, repeat: s.repeat }]
        : [];
    });
    if (points.length === 0) continue;
    phases[phase] = sizes.map((size) =>
      spreadOf(points.filter((p) => p.sizeBytes === size).map((p) => p.ms)),
    );
    if (new Set(points.map((p) => p.sizeBytes)).size >= 2) slopes.push(phaseSlope(phase, points));
  }
  const memory = sizes.map((size): MemoryAtSize => {
    const med = (k: keyof HandoverMemory) => {
      const values = samples.flatMap((s) =>
        s.sizeBytes === size && s.memory[k] !== undefined ? [s.memory[k]] : [],
      );
      return values.length ? median(values) : undefined;
    };
    return Object.fromEntries(MEMORY_KEYS.map((k) => [k, med(k)])) as MemoryAtSize;
  });
  return { arch: first.arch, shape: first.shape, kernel: first.kernel, sizes, phases, memory, slopes };
}

/** B against A per phase, over the sizes both have. */
export function comparisonOf(
  a: readonly HandoverSample[],
  b: readonly HandoverSample[],
  minEffect = DEFAULT_MIN_EFFECT,
  minEffectMs?: number,
): Omit<HandoverComparison, "arch" | "shape"> {
  const sizes = [...new Set(a.map((s) => s.sizeBytes))].filter((size) => b.some((s) => s.sizeBytes === size));
  const values = (samples: readonly HandoverSample[], phase: HandoverPhase | HandoverMetric, size: number) =>
    samples.flatMap((s) => {
      const ms = s.sizeBytes === size ? s.phasesMs[phase] : undefined;
      return ms !== undefined && Number.isFinite(ms) ? [ms] : [];
    });
  // comparePhases leaves out the phases no size has on both sides
  const phases = HANDOVER_COLUMNS.map((phase) => ({
    phase,
    strata: sizes.map((size) => ({ a: values(a, phase, size), b: values(b, phase, size) })),
  }));
  return comparePhases(phases, { minEffect, ...(minEffectMs !== undefined ? { minEffectMs } : {}) });
}

export async function runHandoverBench(opts: HandoverBenchOptions): Promise<HandoverBenchReport> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  for (const shape of opts.shapes) {
    const problem = sizeProblem(shape, opts.sizes);
    if (problem) throw new HarnessError(problem, [], BAD_INPUT_EXIT);
  }
  const memoryMiB = guestMemoryMiB(opts.sizes);
  const jobs = opts.jobs ?? 1;
  // The guests at once, plus the host's own 2 GiB.
  if (jobs * memoryMiB * MiB + 2 * GiB > totalmem())
    throw new HarnessError(
      `the biggest size needs guests of ${memoryMiB} MiB (${jobs} at once), and this host has ${Math.round(totalmem() / MiB)} MiB of RAM (${Math.round(freemem() / MiB)} free)`,
      [],
      BAD_INPUT_EXIT,
    );
  for (const side of [opts.a, ...(opts.b ? [opts.b] : [])])
    if (kernelRunOptions(side).kernel && opts.arches.length > 1)
      throw new HarnessError(
        `a prebuilt image (${side.spec}) runs on one arch: give --arch`,
        [],
        BAD_INPUT_EXIT,
      );
  if (opts.b && opts.repeat % 2 === 1)
    opts.log(
      `# --repeat ${opts.repeat} is odd: kernel A goes first in more repeats than B (A B, B A, B A, A B...); an even one balances them`,
    );
  if (opts.b && opts.repeat < 4)
    opts.log(
      `# --repeat ${opts.repeat}: with fewer than 4 samples a side, the bootstrap's intervals are too narrow to trust (an A/A run with 2 found a phase "slower"); use 4 or more for verdicts`,
    );
  const random = seededRandom(opts.seed ?? 1);
  const sides = opts.b
    ? ([
        ["A", opts.a],
        ["B", opts.b],
      ] as const)
    : ([["A", opts.a]] as const);
  const samples: HandoverSample[] = [];
  const failures: HandoverBenchReport["failures"][number][] = [];
  const images = new Map<string, BenchKernel["images"][number][]>();
  const setup = new Map<ArchName, { arch: ArchName; accel: string; memoryMiB: number }>();
  for (let repeat = 1; repeat <= opts.repeat; repeat++) {
    for (const shape of opts.shapes) {
      // A B, B A, B A, A B...: over an even number of repeats each side goes first as often,
      // and drift in the host's load (or a first guest's cold start) hits both sides alike.
      const order = repeat % 4 <= 1 ? sides : [...sides].reverse();
      for (const [label, side] of order) {
        const sizes = shuffled(opts.sizes, random);
        const outDir = join(opts.outDir, `${shape}-${label}-r${repeat}`);
        await mkdir(outDir, { recursive: true });
        opts.log(
          `# bench handover ${shape}, kernel ${label}, repeat ${repeat}/${opts.repeat}: ${sizes.map(sizeArg).join(" ")}`,
        );
        const report = await runScenarios({
          arches: opts.arches,
          scenarios: sizes.map((size) =>
            handoverCostScenario({ shape, size, memoryMiB, ...(side.append ? { append: side.append } : {}) }),
          ),
          outDir,
          log: (l) => opts.log(`#   ${l.replace(/^#\s*/, "")}`),
          onResult: () => undefined,
          jobs,
          ...kernelRunOptions(side),
        });
        for (const s of report.setups) {
          setup.set(s.arch, { arch: s.arch, accel: s.accel, memoryMiB });
          const list = images.get(label) ?? [];
          if (!list.some((i) => i.arch === s.arch))
            list.push({ arch: s.arch, image: s.kernel.image, release: s.kernel.release });
          images.set(label, list);
        }
        for (const f of report.setupFailures)
          failures.push({
            arch: f.arch as ArchName,
            kernel: label,
            shape,
            repeat,
            reason: `${f.stage}: ${f.message}`,
          });
        for (const arch of opts.arches) {
          const results = report.results.filter((r) => r.arch === arch);
          const got = samplesOf(
            results.flatMap((r) => r.facts ?? []),
            { arch, kernel: label, shape, repeat },
          );
          samples.push(...got);
          for (const r of results) {
            if (r.verdict === "pass" && r.facts?.some((f) => f.kind === "handover-cost")) continue;
            const reason = `${r.id}: ${r.verdict}: ${r.reason ?? "no handover-cost fact"}`;
            opts.log(`#   ${arch} ${reason}`);
            failures.push({
              arch,
              kernel: label,
              shape,
              repeat,
              reason,
              ...(r.artifactsDir ? { artifacts: r.artifactsDir } : {}),
            });
          }
        }
      }
    }
  }
  const figures: HandoverFigures[] = [];
  const comparisons: HandoverComparison[] = [];
  for (const arch of opts.arches)
    for (const shape of opts.shapes) {
      const of = (k: "A" | "B") =>
        samples.filter((s) => s.arch === arch && s.shape === shape && s.kernel === k);
      for (const [label] of sides) {
        const f = figuresOf(of(label));
        if (f) figures.push(f);
      }
      if (opts.b && of("A").length && of("B").length)
        comparisons.push({
          arch,
          shape,
          ...comparisonOf(of("A"), of("B"), opts.minEffect, opts.minEffectMs),
        });
    }
  return {
    schema: HANDOVER_BENCH_SCHEMA,
    host: hostname(),
    cpus: cpus().length,
    startedAt,
    wallMs: Math.round(performance.now() - started),
    repeat: opts.repeat,
    sizes: [...opts.sizes],
    shapes: [...opts.shapes],
    kernels: sides.map(([label, side]) => ({
      label,
      spec: side.spec,
      ...(side.append ? { append: side.append } : {}),
      images: images.get(label) ?? [],
    })),
    setup: [...setup.values()],
    samples,
    figures,
    comparisons,
    failures,
  };
}
