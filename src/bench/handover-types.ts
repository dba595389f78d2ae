// What `kho bench handover` measures and reports: one sample per kexec (the phases cut from the
// console and the agent's timings, the memory figures), and what the bench computes from them
// (per size medians, fitted slopes, the A/B verdicts). Types only; the logic is in
// handover-phases.ts (cutting), interval.ts (statistics), handover.ts (the run) and
// handover-format.ts (tables, charts, HTML).
import type { ArchName } from "../arch.js";

export const HANDOVER_SHAPES = ["memfd", "folios-order0", "folios-order9", "mixed"] as const;
export type HandoverShape = (typeof HANDOVER_SHAPES)[number];

/**
 * The phases of one handover, in the order they happen. The first six are cut from the console
 * (the old kernel's printk times, then the new kernel's lines on the host clock; the guest boots
 * with its early console so early lines arrive as they are printed); the last three come from the
 * agent or the test module in the new kernel.
 */
export const HANDOVER_PHASES = [
  /** The agent's reboot(KEXEC) mark to "kexec_core: Starting new kernel" (old kernel's printk). */
  "shutdown",
  /** "Starting new kernel" to the new kernel's banner: purgatory and decompression (host clock). */
  "purgatory",
  /** The banner to "Built N zonelists": setup_arch, memblock, KHO's FDT and scratch (host clock). */
  "early-boot",
  /** "Built N zonelists" to "SLUB:": mm_core_init, where KHO walks the preserved-memory tree,
   *  reserves every preserved range and frees the rest to the buddy allocator. */
  "mm-init",
  /** "SLUB:" to "Run /init": initcalls, LUO's early retrieve, deferred struct page init. */
  "kernel-init",
  /** "Run /init" to the guest's ready line (init, sshd). */
  "userspace",
  /** LUO: the agent's RETRIEVE_FD calls (memfd shapes). */
  "luo-retrieve",
  /** The agent reading every restored page back (memfd shapes): the memory usable again. */
  "readback",
  /** The test module's load in the new kernel: restore, check and free every block (folio shapes). */
  "module-restore",
] as const;
export type HandoverPhase = (typeof HANDOVER_PHASES)[number];

/** Figures that are not a slice of the timeline. */
export const HANDOVER_METRICS = [
  /** Sum of "node N deferred pages initialised in X ms" (inside kernel-init). */
  "deferred-pages",
  /** The kexec trigger to the new kernel answering SSH, as the harness saw it (host clock). */
  "blackout",
] as const;
export type HandoverMetric = (typeof HANDOVER_METRICS)[number];

/** Every phase, then every metric: the order of the tables, charts and comparisons. */
export const HANDOVER_COLUMNS: readonly (HandoverPhase | HandoverMetric)[] = [
  ...HANDOVER_PHASES,
  ...HANDOVER_METRICS,
];

/** The memory side of one handover. Undefined where this kernel or shape does not show it. */
export interface HandoverMemory {
  /** Pages the preserved-memory tree marks (chunks by order, summed as 4 KiB pages). */
  readonly preservedPages: number;
  /** Pages of the radix tree itself (tables and bitmaps), decoded on the host before the kexec. */
  readonly radixPages: number;
  /** Pages of LUO's serialized state: its header, session and file blocks, each memfd's state,
   *  folio array and kho_vmalloc chunks (decoded on the host). */
  readonly luoPages?: number;
  /** The KHO scratch areas of the kernel that preserved (debugfs kho/out/scratch_len). */
  readonly scratchBytes?: number;
  /** "Memory: ... NK reserved" of the old and of the new kernel. */
  readonly reservedKiBBefore?: number;
  readonly reservedKiBAfter?: number;
  /** MemTotal of the new kernel after the restore (what it did not keep reserved). */
  readonly memTotalKiBAfter?: number;
}

/** One kexec of the bench. */
export interface HandoverSample {
  readonly arch: ArchName;
  /** "A" is --kernel (or the harness's own), "B" is --compare-kernel. */
  readonly kernel: "A" | "B";
  readonly shape: HandoverShape;
  readonly sizeBytes: number;
  /** 1-based. */
  readonly repeat: number;
  readonly phasesMs: Partial<Record<HandoverPhase | HandoverMetric, number>>;
  readonly memory: HandoverMemory;
}

/** Median, min and max of one phase at one size over the repeats. */
export interface Spread {
  readonly n: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

/** A phase's growth with preserved size: least squares over every sample. */
export interface PhaseSlope {
  readonly phase: HandoverPhase | HandoverMetric;
  readonly msPerGiB: number;
  /** The same per million preserved 4 KiB pages. */
  readonly msPerMillionPages: number;
  /** ms at 0 bytes. */
  readonly interceptMs: number;
  /** The slope fitted to each repeat alone: its spread (min, median, max), ms per GiB. */
  readonly perRepeat: {
    readonly min: number;
    readonly median: number;
    readonly max: number;
    readonly n: number;
  };
}

export type ComparisonVerdict = "faster" | "slower" | "no difference";

/** B against A on one phase, over every size. */
export interface PhaseComparison {
  readonly phase: HandoverPhase | HandoverMetric;
  /** Sum over sizes of B's median / the same of A's: above 1, B is slower. */
  readonly ratio: number;
  /** The confidence interval of the ratio (see interval.ts for the method). */
  readonly lo: number;
  readonly hi: number;
  /** B's median minus A's, averaged over the sizes (ms). */
  readonly deltaMs?: number;
  /** The stratified rank permutation test's two-sided p-value (interval.ts). */
  readonly p?: number;
  readonly verdict: ComparisonVerdict;
}

/** The memory figures of one size: the median over the repeats of each. */
export type MemoryAtSize = Readonly<Record<keyof HandoverMemory, number | undefined>>;

/** One arch, shape and kernel: every phase per size, the memory per size, the slopes. */
export interface HandoverFigures {
  readonly arch: ArchName;
  readonly shape: HandoverShape;
  readonly kernel: "A" | "B";
  /** Bytes preserved, ascending; every per-size array below is indexed like it. */
  readonly sizes: readonly number[];
  /** Phase (or metric) -> its spread at each size (null: no sample there). */
  readonly phases: Readonly<Partial<Record<HandoverPhase | HandoverMetric, readonly (Spread | null)[]>>>;
  readonly memory: readonly MemoryAtSize[];
  readonly slopes: readonly PhaseSlope[];
}

/** The A/B verdicts of one arch and shape. */
export interface HandoverComparison {
  readonly arch: ArchName;
  readonly shape: HandoverShape;
  /** How the interval was computed, in words (for the report). */
  readonly method: string;
  /** Confidence level of each interval, after the correction for the number of phases. */
  readonly level: number;
  /** A ratio within 1 ± minEffect is "no difference" even when the interval excludes 1. */
  readonly minEffect: number;
  /** So is a difference of the medians under this many ms (per size, on average). */
  readonly minEffectMs?: number;
  readonly phases: readonly PhaseComparison[];
}

export interface BenchKernel {
  /** "A" or "B". */
  readonly label: "A" | "B";
  /** What the user gave: a path, a variant name, "default" (the harness's build). */
  readonly spec: string;
  /** Extra kernel parameters of this side. */
  readonly append?: string;
  /** Per arch: the image and its release. */
  readonly images: readonly { readonly arch: ArchName; readonly image: string; readonly release: string }[];
}

export const HANDOVER_BENCH_SCHEMA = "kho-harness/bench-handover@1";

export interface HandoverBenchReport {
  readonly schema: typeof HANDOVER_BENCH_SCHEMA;
  readonly host: string;
  readonly cpus: number;
  readonly startedAt: string;
  readonly wallMs: number;
  readonly repeat: number;
  readonly sizes: readonly number[];
  readonly shapes: readonly HandoverShape[];
  readonly kernels: readonly BenchKernel[];
  /** Per arch: the accelerator and the guest's RAM. */
  readonly setup: readonly { readonly arch: ArchName; readonly accel: string; readonly memoryMiB: number }[];
  readonly samples: readonly HandoverSample[];
  readonly figures: readonly HandoverFigures[];
  readonly comparisons: readonly HandoverComparison[];
  /** Guest runs that ended without their samples (the reason and the run's artifacts folder). */
  readonly failures: readonly {
    readonly arch: ArchName;
    readonly kernel: "A" | "B";
    readonly shape: HandoverShape;
    readonly repeat: number;
    readonly reason: string;
    readonly artifacts?: string;
  }[];
}
