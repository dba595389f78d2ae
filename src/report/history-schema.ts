// The document `kho report history` writes (history.json): what happened to each scenario over a
// series of runs. Its own file so that the page (history-html.ts) and the builder (history.ts)
// can both use it without depending on each other. The zod schema below is the file's shape; the
// compiler checks it against the interfaces, so the two cannot drift apart.
import { z } from "zod";
import { type Holds, type Out, type SameShape, VerdictSchema } from "./schema.js";
import type { Verdict } from "./verdict.js";

export const HISTORY_SCHEMA = "kho-harness/history@1";

/** A cell of the timeline: the verdict, `flaky` when a repeated run's attempts disagreed,
 *  `absent` when the run did not have the scenario on that arch. */
export type CellState = Verdict | "flaky" | "absent";

/** The kernel an arch ran in one run, as told apart from the others in the history. */
export interface RunKernel {
  readonly arch: string;
  /** HistoryKernel.key. */
  readonly key: string;
  /** HistoryKernel.label. */
  readonly label: string;
  /** A different kernel from the one this arch ran in the run before (that had the arch). */
  readonly changed: boolean;
}

export interface HistoryRun {
  /** The run folder as given. */
  readonly dir: string;
  /** The report's startedAt. */
  readonly startedAt: string | null;
  /** startedAt, else the time in the run folder's name (out/runs/<time>), else null. */
  readonly time: string | null;
  readonly startedFrom: string;
  readonly hostname: string;
  readonly wallMs: number;
  readonly exitCode: number;
  readonly totals: Readonly<Record<Verdict, number>>;
  /** Per arch the run set up, in the report's order. */
  readonly kernels: readonly RunKernel[];
}

/** One kernel of one arch, as many runs as ran it. */
export interface HistoryKernel {
  readonly arch: string;
  /** What makes it this kernel: the image's sha256, else the build key, the config's sha256,
   *  or (reports before @2) the image's path. */
  readonly key: string;
  /** "7.2.13 (ff770923)": the release and a short form of the key, unique within the arch. */
  readonly label: string;
  readonly release: string;
  readonly source: string | null;
  readonly buildKey: string | null;
  readonly imageSha256: string | null;
  readonly configSha256: string | null;
  readonly image: string;
  /** Indexes into History.runs. */
  readonly runs: readonly number[];
}

export interface HistoryCell {
  readonly state: CellState;
  /** Each attempt's verdict, in attempt order (one for a run without --repeat; none when absent). */
  readonly attempts: readonly Verdict[];
  /** Some attempt failed: fail, error or xpass. */
  readonly failing: boolean;
  /** The first run of a new failure: failing here and not in the run before. */
  readonly newFailure: boolean;
  /** The failing attempt's reason, else the first attempt's; every attempt's when flaky. */
  readonly reason?: string;
}

export interface NewFailure {
  /** Index into History.runs. */
  readonly run: number;
  /** The kernel label of the row's arch in that run; null when the run did not record it. */
  readonly kernel: string | null;
  readonly state: CellState;
  readonly reason?: string;
}

export interface FlakeRate {
  /** Runs that had the scenario on this arch. */
  readonly presentRuns: number;
  /** Runs whose attempts disagreed. */
  readonly flakyRuns: number;
  /** flakyRuns / presentRuns; null when never present. */
  readonly flakyRunRate: number | null;
  /** Attempts over all runs, in order, that passed (pass, xfail) or failed (fail, error, xpass);
   *  skip and notrun are neither. */
  readonly outcomes: number;
  /** Successive such outcomes that went from passing to failing or back. */
  readonly switches: number;
  /** switches / (outcomes - 1); null with fewer than two outcomes. */
  readonly switchRate: number | null;
}

/** A phase's time (ms) in each run, in History.runs order; null where it was not recorded.
 *  Repeated attempts give their median. */
export interface PhaseSeries {
  readonly phase: string;
  readonly ms: readonly (number | null)[];
}

export interface HistoryRow {
  readonly id: string;
  readonly arch: string;
  /** One per run, in History.runs order. */
  readonly cells: readonly HistoryCell[];
  /** Failing in the first run already: when it started is before the history. */
  readonly failingAtStart: boolean;
  readonly newFailures: readonly NewFailure[];
  readonly flake: FlakeRate;
  /** Each phase in first-run order, then "total" (the scenario's totalMs). */
  readonly phases: readonly PhaseSeries[];
}

/** Per arch, each phase's time summed over the arch's scenarios in each run. */
export interface ArchPhases {
  readonly arch: string;
  /** How many scenarios were timed in each run (the sums are over different sets when it varies). */
  readonly scenarios: readonly number[];
  readonly phases: readonly PhaseSeries[];
}

export interface History {
  readonly schema: typeof HISTORY_SCHEMA;
  /** Oldest first. */
  readonly runs: readonly HistoryRun[];
  readonly kernels: readonly HistoryKernel[];
  /** By arch, then scenario id. */
  readonly rows: readonly HistoryRow[];
  readonly arches: readonly ArchPhases[];
}

const ms = z.number();
const runIndex = z.int().nonnegative();
const count = z.int().nonnegative();
const rate = z.number().min(0).max(1).nullable();

export const CellStateSchema = z.union([VerdictSchema, z.literal("flaky"), z.literal("absent")]);

const RunKernelSchema = z.object({
  arch: z.string(),
  key: z.string(),
  label: z.string(),
  changed: z.boolean(),
});

const HistoryRunSchema = z.object({
  dir: z.string(),
  startedAt: z.string().nullable(),
  time: z.string().nullable(),
  startedFrom: z.string(),
  hostname: z.string(),
  wallMs: ms,
  exitCode: z.number(),
  totals: z.record(VerdictSchema, count),
  kernels: z.array(RunKernelSchema),
});

const HistoryKernelSchema = z.object({
  arch: z.string(),
  key: z.string(),
  label: z.string(),
  release: z.string(),
  source: z.string().nullable(),
  buildKey: z.string().nullable(),
  imageSha256: z.string().nullable(),
  configSha256: z.string().nullable(),
  image: z.string(),
  runs: z.array(runIndex),
});

const HistoryCellSchema = z.object({
  state: CellStateSchema,
  attempts: z.array(VerdictSchema),
  failing: z.boolean(),
  newFailure: z.boolean(),
  reason: z.string().optional(),
});

const NewFailureSchema = z.object({
  run: runIndex,
  kernel: z.string().nullable(),
  state: CellStateSchema,
  reason: z.string().optional(),
});

const FlakeRateSchema = z.object({
  presentRuns: count,
  flakyRuns: count,
  flakyRunRate: rate,
  outcomes: count,
  switches: count,
  switchRate: rate,
});

const PhaseSeriesSchema = z.object({ phase: z.string(), ms: z.array(ms.nullable()) });

const HistoryRowSchema = z.object({
  id: z.string(),
  arch: z.string(),
  cells: z.array(HistoryCellSchema),
  failingAtStart: z.boolean(),
  newFailures: z.array(NewFailureSchema),
  flake: FlakeRateSchema,
  phases: z.array(PhaseSeriesSchema),
});

const ArchPhasesSchema = z.object({
  arch: z.string(),
  scenarios: z.array(count),
  phases: z.array(PhaseSeriesSchema),
});

export const HistorySchema = z.object({
  schema: z.literal(HISTORY_SCHEMA),
  runs: z.array(HistoryRunSchema),
  kernels: z.array(HistoryKernelSchema),
  rows: z.array(HistoryRowSchema),
  arches: z.array(ArchPhasesSchema),
});

// --- Each schema is the type it validates (checked by the compiler, no code) --------------------

export type HistorySchemaMatchesTypes = [
  Holds<SameShape<Out<typeof CellStateSchema>, CellState>>,
  Holds<SameShape<Out<typeof RunKernelSchema>, RunKernel>>,
  Holds<SameShape<Out<typeof HistoryRunSchema>, HistoryRun>>,
  Holds<SameShape<Out<typeof HistoryKernelSchema>, HistoryKernel>>,
  Holds<SameShape<Out<typeof HistoryCellSchema>, HistoryCell>>,
  Holds<SameShape<Out<typeof NewFailureSchema>, NewFailure>>,
  Holds<SameShape<Out<typeof FlakeRateSchema>, FlakeRate>>,
  Holds<SameShape<Out<typeof PhaseSeriesSchema>, PhaseSeries>>,
  Holds<SameShape<Out<typeof HistoryRowSchema>, HistoryRow>>,
  Holds<SameShape<Out<typeof ArchPhasesSchema>, ArchPhases>>,
  Holds<SameShape<Out<typeof HistorySchema>, History>>,
];
