// The run report (report.json) as a versioned document, and its reader. `kho run` writes the
// current schema; `kho report` reads it and the previous one (upgraded with nulls where the
// older report did not record a fact). Anything else is refused with one sentence. The file's
// shape is a zod schema below; the compiler checks each part against the interface it stands for
// (here, in verdict.ts, src/api/ and boot-timeline.ts), so the two cannot drift apart.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { ARCH_NAMES, isArchName, type ArchName } from "../arch.js";
import type { Fact } from "../api/facts.js";
import type { CheckRecord, NotDoneReason } from "../api/findings.js";
import { HarnessError } from "../errors.js";
import { parseWith } from "../util/zod-issue.js";
import type { BootSegment, BootTiming } from "../session/boot-timeline.js";
import type { ScenarioResult, SetupFailure, ShardRecord, Verdict } from "./verdict.js";

export const RUN_REPORT_SCHEMA = "kho-harness/run-report@2";
/** Schemas this reader understands: the current one and what it upgrades. */
export const READABLE_SCHEMAS = ["kho-harness/run-report@1", RUN_REPORT_SCHEMA] as const;
export type ReadableSchema = (typeof READABLE_SCHEMAS)[number];

export const VERDICTS = [
  "pass",
  "fail",
  "xfail",
  "xpass",
  "skip",
  "error",
  "notrun",
] as const satisfies readonly Verdict[];

/** The unit durations a run measured, in its run folder (what `--durations` reads). */
export const DURATIONS_FILE = "unit-durations.json";

/** Exit code for unusable input to `kho report` (1 is kept for "new failures"). */
export const BAD_INPUT_EXIT = 2;

export interface QemuInfo {
  /** qemu-system-x86_64, qemu-system-aarch64. */
  readonly binary: string;
  /** "10.0.2"; null when the binary did not answer (or the report predates the field). */
  readonly version: string | null;
  /** The first line of `--version`, with the distribution's package version. */
  readonly banner: string | null;
}

export interface KernelIdentity {
  readonly image: string;
  /** sha256 of the boot image file. */
  readonly imageSha256: string | null;
  /** `uname -r`. */
  readonly release: string;
  /** What the guest kexecs into (the same image unless --next-kernel). */
  readonly next: string;
  /**
   * sha256 of the kernel's configuration as `CONFIG_NAME=value` lines sorted by name (unset
   * options as `=n`): equal for equal configs whether read from IKCONFIG or a .config file.
   */
  readonly configSha256: string | null;
  /** Number of options in that config. */
  readonly configOptions: number | null;
  /** "linux-source-7.2 7.2.13-1" or "git <sha>" when the harness built it; null for --kernel. */
  readonly source: string | null;
  /** The harness's kernel cache key, when the harness built it. */
  readonly buildKey: string | null;
}

export interface ArchEntry {
  readonly arch: ArchName;
  /** "machine": a machine target (kho run --target), no QEMU; accelReason names it. */
  readonly accel: "kvm" | "tcg" | "machine";
  /** Why this accelerator ("KVM probe passed", "KVM unusable: ...", "KHO_ACCEL"). */
  readonly accelReason: string | null;
  readonly qemu: QemuInfo;
  readonly kernel: KernelIdentity;
  /** Per-arch setup phases in ms: kernel (build or cache), inspect, image, boot-files. */
  readonly phaseMs: Readonly<Record<string, number>>;
}

export interface KvmFact {
  readonly usable: boolean;
  readonly reason?: string;
  readonly probedAt: string;
}

/** Facts about the machine that ran the guests. Null where a @1 report did not record them. */
export interface HostInfo {
  readonly hostname: string;
  /** "Linux 6.1.0-31-amd64". */
  readonly os: string | null;
  /** Node's process.arch: x64, arm64. */
  readonly cpuArch: string | null;
  readonly cpuModel: string | null;
  readonly cpus: number | null;
  readonly memoryMiB: number | null;
  readonly node: string | null;
  /** The KVM probe verdicts remembered in the cache (host.json), per guest arch. */
  readonly kvm: Readonly<Partial<Record<ArchName, KvmFact>>>;
}

/** A host known by name only (reports older than @2 recorded nothing else). */
export function unknownHost(hostname: string): HostInfo {
  return {
    hostname,
    os: null,
    cpuArch: null,
    cpuModel: null,
    cpus: null,
    memoryMiB: null,
    node: null,
    kvm: {},
  };
}

/** One scenario run, exactly as the runner produced it. */
export type ReportResult = ScenarioResult;

export interface RunReportDoc {
  readonly schema: typeof RUN_REPORT_SCHEMA;
  /** ISO time the run started; null in upgraded @1 reports. */
  readonly startedAt: string | null;
  /** The command line. */
  readonly startedFrom: string;
  readonly wallMs: number;
  /** kselftest: 0 all passed, 1 a failure, 4 only skips. */
  readonly exitCode: number;
  readonly totals: Readonly<Record<Verdict, number>>;
  readonly host: HostInfo;
  readonly arches: readonly ArchEntry[];
  /** Arch setups that failed, each once; the results they stopped have verdict `notrun`.
   *  Absent in reports written before it was recorded (read as none). */
  readonly setupFailures: readonly SetupFailure[];
  readonly results: readonly ReportResult[];
  /** Set when the run did one shard of a selection (`--shard K/N`). */
  readonly shard?: ShardRecord;
  /** Set on a merged run (`kho report merge`): the shard folders it was made from. */
  readonly mergedFrom?: readonly MergedShard[];
}

export interface MergedShard {
  readonly dir: string;
  readonly shard: string;
  readonly wallMs: number;
  readonly hostname: string;
}

export interface LoadedReport {
  readonly doc: RunReportDoc;
  /** The report.json that was read. */
  readonly path: string;
  /** Its folder: the run folder, where the summaries go. */
  readonly dir: string;
  /** The schema the file had, when it was upgraded to the current one. */
  readonly upgradedFrom?: ReadableSchema;
}

export function countVerdicts(results: readonly { verdict: Verdict }[]): Record<Verdict, number> {
  const totals = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Record<Verdict, number>;
  for (const r of results) totals[r.verdict] += 1;
  return totals;
}

const bad = (message: string) => new HarnessError(message, [], BAD_INPUT_EXIT);

/** Reads DIR/report.json or a report.json path; one sentence when it is not a readable report. */
export async function loadReport(pathOrDir: string): Promise<LoadedReport> {
  const info = await stat(pathOrDir).catch(() => undefined);
  if (!info)
    throw bad(`${pathOrDir} does not exist: give a run folder (out/runs/<time>/) or its report.json`);
  const path = info.isDirectory() ? join(pathOrDir, "report.json") : pathOrDir;
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) {
    throw bad(
      info.isDirectory()
        ? `${pathOrDir} has no report.json: is it a run folder (out/runs/<time>/)?`
        : `cannot read ${path}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(`${path} is not a kho run report: it is not JSON (${(e as Error).message})`);
  }
  const { doc, upgradedFrom } = parseReport(json, path);
  const dir = info.isDirectory() ? pathOrDir : join(path, "..");
  return { doc, path, dir, ...(upgradedFrom ? { upgradedFrom } : {}) };
}

/** Validates a parsed report.json and upgrades a @1 report to the current schema. */
export function parseReport(
  json: unknown,
  name = "the report",
): { doc: RunReportDoc; upgradedFrom?: ReadableSchema } {
  if (!isObject(json) || typeof json.schema !== "string") {
    throw bad(`${name} is not a kho run report (no "schema" field)`);
  }
  const schema = json.schema;
  if (!(READABLE_SCHEMAS as readonly string[]).includes(schema)) {
    throw bad(
      schema.startsWith("kho-harness/run-report@")
        ? `${name} has schema ${schema}, which this harness cannot read (it reads ${READABLE_SCHEMAS.join(", ")}): use the harness version that wrote it`
        : `${name} is not a kho run report (schema "${schema}")`,
    );
  }
  if (schema === RUN_REPORT_SCHEMA) {
    const r = valid(ReportV2, json, name);
    const doc: RunReportDoc = {
      schema: RUN_REPORT_SCHEMA,
      startedAt: r.startedAt,
      startedFrom: r.startedFrom,
      wallMs: r.wallMs,
      exitCode: r.exitCode,
      totals: countVerdicts(r.results),
      host: r.host,
      arches: r.arches,
      setupFailures: r.setupFailures ?? [],
      results: r.results,
      ...(r.shard ? { shard: r.shard } : {}),
      ...(r.mergedFrom ? { mergedFrom: r.mergedFrom } : {}),
    };
    return { doc };
  }
  // @1: host was the hostname; arches had no QEMU, config hash or accelerator reason.
  const r = valid(ReportV1, json, name);
  const doc: RunReportDoc = {
    schema: RUN_REPORT_SCHEMA,
    startedAt: null,
    startedFrom: r.startedFrom,
    wallMs: r.wallMs,
    exitCode: r.exitCode,
    totals: countVerdicts(r.results),
    host: unknownHost(r.host),
    arches: r.arches.map((a): ArchEntry => ({
      arch: a.arch,
      accel: a.accel,
      accelReason: null,
      qemu: { binary: "", version: null, banner: null },
      kernel: {
        image: a.kernel.image,
        imageSha256: null,
        release: a.kernel.release,
        next: a.kernel.next,
        configSha256: null,
        configOptions: null,
        source: null,
        buildKey: null,
      },
      phaseMs: a.phaseMs,
    })),
    setupFailures: [],
    results: r.results,
  };
  return { doc, upgradedFrom: "kho-harness/run-report@1" };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** `json` as `schema` says, or one sentence naming the first field that is wrong. */
function valid<S extends z.ZodType>(schema: S, json: unknown, name: string): z.output<S> {
  const r = parseWith(schema, json);
  if (r.ok) return r.value;
  throw bad(`${name} is not a valid kho run report: ${r.problem}`);
}

// --- The schema -------------------------------------------------------------------------------

const ms = z.number();
const count = z.int().nonnegative();
const timings = z.record(z.string(), ms);
const lines = z.array(z.string());
const archName = z.enum(ARCH_NAMES);
const accel = z.enum(["kvm", "tcg", "machine"]);

export const VerdictSchema = z.enum(VERDICTS);

export const FactSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("memfds-restored"),
    memfds: count,
    sessions: count,
    bytes: count,
    frames: count,
  }),
  z.object({ kind: z.literal("blackout"), step: z.string(), totalMs: ms }),
  z.object({ kind: z.literal("handover-map"), chunks: count, framesFound: count, decodeMs: ms }),
  z.object({ kind: z.literal("luo-handover"), sessions: count, files: count, folios: count }),
  z.object({ kind: z.literal("folios"), memfd: z.string(), orders: z.record(z.string(), count) }),
  z.object({ kind: z.literal("errno"), operation: z.string(), errname: z.string() }),
  z.object({
    kind: z.literal("boot"),
    boot: count,
    release: z.string(),
    execFrom: z.string().optional(),
    execCount: count.optional(),
  }),
  z.object({
    kind: z.literal("page-block"),
    order: count,
    tails: z.record(z.string(), count),
    compound: z.boolean(),
    pattern: z.boolean(),
  }),
  z.object({
    kind: z.literal("numa-topology"),
    boot: count,
    nodes: z.array(z.object({ node: count, cpus: z.string(), memKiB: count })),
  }),
  z.object({
    kind: z.literal("numa-blocks"),
    blocks: z.array(
      z.object({
        kind: z.string(),
        order: count,
        phys: z.string(),
        asked: count,
        before: z.number().int(),
        after: z.number().int().nullable(),
        host: count.nullable(),
        zone: z.string().nullable(),
      }),
    ),
  }),
  z.object({ kind: z.literal("max-order"), before: count, after: count }),
  z.object({
    kind: z.literal("handover-pause"),
    via: z.enum(["breakpoint", "console"]),
    detail: z.string(),
    pausedMs: count,
    armMs: count.optional(),
  }),
  z.object({
    kind: z.literal("corruption"),
    case: z.string(),
    seed: z.number().int(),
    outcome: z.enum(["refused", "accepted", "warned", "oops", "panic", "hang"]),
    writes: z.array(z.object({ phys: z.string(), what: z.string(), before: z.string(), after: z.string() })),
  }),
  z.object({
    kind: z.literal("handover-cost"),
    shape: z.string(),
    sizeBytes: z.number().int(),
    phasesMs: z.record(z.string(), z.number()),
    memory: z.record(z.string(), z.number()),
  }),
  z.object({
    kind: z.literal("traffic"),
    upBytes: count,
    downBytes: count,
    upBytesAtTrigger: count,
    downBytesAtTrigger: count,
    windowTxBytes: count,
    windowRxBytes: count,
    napiTx: z.boolean(),
  }),
  z.object({ kind: z.literal("race"), race: z.string(), counts: z.record(z.string(), z.number().int()) }),
  z.object({
    kind: z.literal("uapi-model"),
    phase: z.string(),
    seed: z.number().int(),
    runs: count,
    ops: count,
    kexecs: count,
    replay: z.string().optional(),
    minimalOps: count.optional(),
  }),
]);

export const NotDoneReasonSchema = z.enum([
  "handover-read-failed",
  "handover-pause-late",
  "handover-missed",
  "handover-not-read",
  "not-on-target",
]);

export const CheckRecordSchema = z.object({
  check: z.string(),
  status: z.enum(["passed", "failed", "not-done"]),
  detail: z.string().optional(),
  notDone: NotDoneReasonSchema.optional(),
  accepted: z.boolean().optional(),
});

const BootSegmentSchema = z.object({ name: z.string(), ms });

export const BootTimingSchema = z.object({
  boot: z.number(),
  via: z.enum(["boot", "kexec"]),
  totalMs: ms,
  segments: z.array(BootSegmentSchema),
});

export const ScenarioResultSchema = z.object({
  id: z.string(),
  arch: z.string(),
  attempt: z.int().min(1).optional(),
  verdict: VerdictSchema,
  reason: z.string().optional(),
  evidence: lines.optional(),
  phaseMs: timings,
  totalMs: ms,
  boots: z.array(BootTimingSchema).optional(),
  facts: z.array(FactSchema).optional(),
  checks: z.array(CheckRecordSchema).optional(),
  artifactsDir: z.string().optional(),
  diskFull: z.boolean().optional(),
  notRunBecause: z.object({ setupArch: z.string(), stage: z.string() }).optional(),
});

export const SetupFailureSchema = z.object({
  arch: z.string(),
  stage: z.string(),
  message: z.string(),
  evidence: lines,
  notRun: z.number(),
});

const QemuInfoSchema = z.object({
  binary: z.string(),
  version: z.string().nullable(),
  banner: z.string().nullable(),
});

const KernelIdentitySchema = z.object({
  image: z.string(),
  imageSha256: z.string().nullable(),
  release: z.string(),
  next: z.string(),
  configSha256: z.string().nullable(),
  configOptions: z.number().nullable(),
  source: z.string().nullable(),
  buildKey: z.string().nullable(),
});

const ArchEntrySchema = z.object({
  arch: archName,
  accel,
  accelReason: z.string().nullable(),
  qemu: QemuInfoSchema,
  kernel: KernelIdentitySchema,
  phaseMs: timings,
});

const KvmFactSchema = z.object({ usable: z.boolean(), reason: z.string().optional(), probedAt: z.string() });

const HostInfoSchema = z.object({
  hostname: z.string(),
  os: z.string().nullable(),
  cpuArch: z.string().nullable(),
  cpuModel: z.string().nullable(),
  cpus: z.number().nullable(),
  memoryMiB: z.number().nullable(),
  node: z.string().nullable(),
  // Verdicts for arches this harness does not know (a newer one wrote the report) are left out.
  kvm: z.preprocess(
    (v) => (isObject(v) ? Object.fromEntries(Object.entries(v).filter(([arch]) => isArchName(arch))) : v),
    z.partialRecord(archName, KvmFactSchema),
  ),
});

const ShardRecordSchema = z.object({
  index: z.int().min(1),
  count: z.int().min(1),
  selection: z.string(),
  durations: z.string(),
  units: z.array(z.string()),
  allUnits: z.array(z.string()),
  estimatedMs: ms,
});

const MergedShardSchema = z.object({
  dir: z.string(),
  shard: z.string(),
  wallMs: ms,
  hostname: z.string(),
});

/** The current report as written; `totals` is not read (it is counted from the results). */
const ReportV2 = z.object({
  schema: z.literal(RUN_REPORT_SCHEMA),
  startedAt: z.string().nullable(),
  startedFrom: z.string(),
  wallMs: ms,
  exitCode: z.number(),
  host: HostInfoSchema,
  arches: z.array(ArchEntrySchema),
  setupFailures: z.array(SetupFailureSchema).optional(),
  results: z.array(ScenarioResultSchema),
  shard: ShardRecordSchema.optional(),
  mergedFrom: z.array(MergedShardSchema).optional(),
});

/** @1: the host by name, arches without QEMU, config hash or accelerator reason. */
const ReportV1 = z.object({
  schema: z.literal("kho-harness/run-report@1"),
  host: z.string(),
  startedFrom: z.string(),
  wallMs: ms,
  exitCode: z.number(),
  arches: z.array(
    z.object({
      arch: archName,
      accel,
      kernel: z.object({ image: z.string(), release: z.string(), next: z.string() }),
      phaseMs: timings,
    }),
  ),
  results: z.array(ScenarioResultSchema),
});

// --- Each schema is the type it validates (checked by the compiler, no code) --------------------

/** T with every property and array readonly, so a schema's output compares with an interface. */
type DeepReadonly<T> = T extends readonly (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;
/** true when A and B are the same type up to readonly (a missing optional field differs). */
export type SameShape<A, B> =
  (<X>() => X extends DeepReadonly<A> ? 1 : 2) extends <X>() => X extends DeepReadonly<B> ? 1 : 2
    ? true
    : false;
export type Holds<T extends true> = T;
export type Out<S extends z.ZodType> = z.output<S>;

export type SchemaMatchesTypes = [
  Holds<SameShape<Out<typeof VerdictSchema>, Verdict>>,
  Holds<SameShape<Out<typeof FactSchema>, Fact>>,
  Holds<SameShape<Out<typeof NotDoneReasonSchema>, NotDoneReason>>,
  Holds<SameShape<Out<typeof CheckRecordSchema>, CheckRecord>>,
  Holds<SameShape<Out<typeof BootSegmentSchema>, BootSegment>>,
  Holds<SameShape<Out<typeof BootTimingSchema>, BootTiming>>,
  Holds<SameShape<Out<typeof ScenarioResultSchema>, ScenarioResult>>,
  Holds<SameShape<Out<typeof SetupFailureSchema>, SetupFailure>>,
  Holds<SameShape<Out<typeof QemuInfoSchema>, QemuInfo>>,
  Holds<SameShape<Out<typeof KernelIdentitySchema>, KernelIdentity>>,
  Holds<SameShape<Out<typeof ArchEntrySchema>, ArchEntry>>,
  Holds<SameShape<Out<typeof KvmFactSchema>, KvmFact>>,
  Holds<SameShape<Out<typeof HostInfoSchema>, HostInfo>>,
  Holds<SameShape<Out<typeof ShardRecordSchema>, ShardRecord>>,
  Holds<SameShape<Out<typeof MergedShardSchema>, MergedShard>>,
];
