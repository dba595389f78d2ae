// The run report (report.json) as a versioned document, and its reader. `kho run` writes the
// current schema; `kho report` reads it and the previous one (upgraded with nulls where the
// older report did not record a fact). Anything else is refused with one sentence.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { isArchName, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import type { BootTiming } from "../session/boot-timeline.js";
import type { ScenarioResult, SetupFailure, Verdict } from "./verdict.js";

export const RUN_REPORT_SCHEMA = "kho-harness/run-report@2";
/** Schemas this reader understands: the current one and what it upgrades. */
export const READABLE_SCHEMAS = ["kho-harness/run-report@1", RUN_REPORT_SCHEMA] as const;
export type ReadableSchema = (typeof READABLE_SCHEMAS)[number];

export const VERDICTS: readonly Verdict[] = ["pass", "fail", "xfail", "xpass", "skip", "error", "notrun"];

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
  readonly accel: "kvm" | "tcg";
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
  const v = new Validator(name);
  const results = v.array(json, "results").map((r, i) => v.result(r, `results[${i}]`));
  if (schema === RUN_REPORT_SCHEMA) {
    const doc: RunReportDoc = {
      schema: RUN_REPORT_SCHEMA,
      startedAt: v.stringOrNull(json, "startedAt"),
      startedFrom: v.string(json, "startedFrom"),
      wallMs: v.number(json, "wallMs"),
      exitCode: v.number(json, "exitCode"),
      totals: countVerdicts(results),
      host: v.host(v.object(json, "host"), "host"),
      arches: v.array(json, "arches").map((a, i) => v.arch(a, `arches[${i}]`, true)),
      setupFailures: json.setupFailures === undefined ? [] : v.setupFailures(json),
      results,
    };
    return { doc };
  }
  // @1: host was the hostname; arches had no QEMU, config hash or accelerator reason.
  const doc: RunReportDoc = {
    schema: RUN_REPORT_SCHEMA,
    startedAt: null,
    startedFrom: v.string(json, "startedFrom"),
    wallMs: v.number(json, "wallMs"),
    exitCode: v.number(json, "exitCode"),
    totals: countVerdicts(results),
    host: unknownHost(v.string(json, "host")),
    arches: v.array(json, "arches").map((a, i) => v.arch(a, `arches[${i}]`, false)),
    setupFailures: [],
    results,
  };
  return { doc, upgradedFrom: "kho-harness/run-report@1" };
}

type Obj = Record<string, unknown>;

function isObject(x: unknown): x is Obj {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Field checks that fail with the path of the first field that is wrong. */
class Validator {
  constructor(private readonly name: string) {}

  private fail(path: string, want: string, got: unknown): never {
    const shown = got === undefined ? "missing" : JSON.stringify(got).slice(0, 40);
    throw bad(`${this.name} is not a valid kho run report: ${path} should be ${want}, got ${shown}`);
  }

  object(o: Obj, key: string, path = key): Obj {
    const x = o[key];
    return isObject(x) ? x : this.fail(path, "an object", x);
  }
  array(o: Obj, key: string, path = key): unknown[] {
    const x = o[key];
    return Array.isArray(x) ? (x as unknown[]) : this.fail(path, "an array", x);
  }
  string(o: Obj, key: string, path = key): string {
    const x = o[key];
    return typeof x === "string" ? x : this.fail(path, "a string", x);
  }
  stringOrNull(o: Obj, key: string, path = key): string | null {
    const x = o[key];
    return x === null || typeof x === "string" ? x : this.fail(path, "a string or null", x);
  }
  number(o: Obj, key: string, path = key): number {
    const x = o[key];
    return typeof x === "number" && Number.isFinite(x) ? x : this.fail(path, "a number", x);
  }
  numberOrNull(o: Obj, key: string, path = key): number | null {
    const x = o[key];
    return x === null || (typeof x === "number" && Number.isFinite(x))
      ? x
      : this.fail(path, "a number or null", x);
  }
  timings(o: Obj, key: string, path: string): Record<string, number> {
    const t = this.object(o, key, path);
    for (const [k, ms] of Object.entries(t)) {
      if (typeof ms !== "number" || !Number.isFinite(ms)) this.fail(`${path}.${k}`, "milliseconds", ms);
    }
    return t as Record<string, number>;
  }

  setupFailures(o: Obj): SetupFailure[] {
    return this.array(o, "setupFailures").map((f, i) => {
      const path = `setupFailures[${i}]`;
      if (!isObject(f)) return this.fail(path, "an object", f);
      const evidence = f.evidence;
      if (!(Array.isArray(evidence) && evidence.every((l) => typeof l === "string")))
        this.fail(`${path}.evidence`, "an array of strings", evidence);
      return {
        arch: this.string(f, "arch", `${path}.arch`),
        stage: this.string(f, "stage", `${path}.stage`),
        message: this.string(f, "message", `${path}.message`),
        evidence,
        notRun: this.number(f, "notRun", `${path}.notRun`),
      };
    });
  }

  result(x: unknown, path: string): ReportResult {
    if (!isObject(x)) return this.fail(path, "an object", x);
    const verdict = x.verdict;
    if (typeof verdict !== "string" || !(VERDICTS as readonly string[]).includes(verdict)) {
      return this.fail(`${path}.verdict`, VERDICTS.join("|"), verdict);
    }
    const evidence = x.evidence;
    if (
      evidence !== undefined &&
      !(Array.isArray(evidence) && evidence.every((l) => typeof l === "string"))
    ) {
      this.fail(`${path}.evidence`, "an array of strings", evidence);
    }
    const attempt = x.attempt;
    if (
      attempt !== undefined &&
      !(typeof attempt === "number" && Number.isInteger(attempt) && attempt >= 1)
    ) {
      this.fail(`${path}.attempt`, "a run number from 1", attempt);
    }
    const optionalString = (key: string) => {
      const s = x[key];
      if (s !== undefined && typeof s !== "string") this.fail(`${path}.${key}`, "a string", s);
      return s;
    };
    const reason = optionalString("reason");
    const artifactsDir = optionalString("artifactsDir");
    const boots = x.boots === undefined ? undefined : this.boots(x.boots, `${path}.boots`);
    return {
      id: this.string(x, "id", `${path}.id`),
      arch: this.string(x, "arch", `${path}.arch`),
      ...(typeof attempt === "number" ? { attempt } : {}),
      verdict: verdict as Verdict,
      ...(typeof reason === "string" ? { reason } : {}),
      ...(evidence !== undefined ? { evidence } : {}),
      phaseMs: this.timings(x, "phaseMs", `${path}.phaseMs`),
      totalMs: this.number(x, "totalMs", `${path}.totalMs`),
      ...(boots ? { boots } : {}),
      ...(typeof artifactsDir === "string" ? { artifactsDir } : {}),
      ...(isObject(x.notRunBecause)
        ? {
            notRunBecause: {
              setupArch: this.string(x.notRunBecause, "setupArch", `${path}.notRunBecause.setupArch`),
              stage: this.string(x.notRunBecause, "stage", `${path}.notRunBecause.stage`),
            },
          }
        : {}),
    };
  }

  /** A result's boot timings (optional; runs before they were recorded have none). */
  boots(x: unknown, path: string): BootTiming[] {
    if (!Array.isArray(x)) return this.fail(path, "an array of boot timings", x);
    return x.map((b: unknown, i) => {
      const p = `${path}[${i}]`;
      if (!isObject(b)) return this.fail(p, "an object", b);
      if (b.via !== "boot" && b.via !== "kexec") return this.fail(`${p}.via`, "boot or kexec", b.via);
      const segments = b.segments;
      if (!Array.isArray(segments)) return this.fail(`${p}.segments`, "an array", segments);
      return {
        boot: this.number(b, "boot", `${p}.boot`),
        via: b.via,
        totalMs: this.number(b, "totalMs", `${p}.totalMs`),
        segments: segments.map((s: unknown, j) => {
          if (!isObject(s)) return this.fail(`${p}.segments[${j}]`, "an object", s);
          return {
            name: this.string(s, "name", `${p}.segments[${j}].name`),
            ms: this.number(s, "ms", `${p}.segments[${j}].ms`),
          };
        }),
      };
    });
  }

  arch(x: unknown, path: string, current: boolean): ArchEntry {
    if (!isObject(x)) return this.fail(path, "an object", x);
    const arch = this.string(x, "arch", `${path}.arch`);
    if (!isArchName(arch)) this.fail(`${path}.arch`, "x86_64 or arm64", arch);
    const accel = x.accel;
    if (accel !== "kvm" && accel !== "tcg") this.fail(`${path}.accel`, "kvm or tcg", accel);
    const k = this.object(x, "kernel", `${path}.kernel`);
    const kp = `${path}.kernel`;
    const phaseMs = this.timings(x, "phaseMs", `${path}.phaseMs`);
    if (!current) {
      return {
        arch,
        accel,
        accelReason: null,
        qemu: { binary: "", version: null, banner: null },
        kernel: {
          image: this.string(k, "image", `${kp}.image`),
          imageSha256: null,
          release: this.string(k, "release", `${kp}.release`),
          next: this.string(k, "next", `${kp}.next`),
          configSha256: null,
          configOptions: null,
          source: null,
          buildKey: null,
        },
        phaseMs,
      };
    }
    const q = this.object(x, "qemu", `${path}.qemu`);
    return {
      arch,
      accel,
      accelReason: this.stringOrNull(x, "accelReason", `${path}.accelReason`),
      qemu: {
        binary: this.string(q, "binary", `${path}.qemu.binary`),
        version: this.stringOrNull(q, "version", `${path}.qemu.version`),
        banner: this.stringOrNull(q, "banner", `${path}.qemu.banner`),
      },
      kernel: {
        image: this.string(k, "image", `${kp}.image`),
        imageSha256: this.stringOrNull(k, "imageSha256", `${kp}.imageSha256`),
        release: this.string(k, "release", `${kp}.release`),
        next: this.string(k, "next", `${kp}.next`),
        configSha256: this.stringOrNull(k, "configSha256", `${kp}.configSha256`),
        configOptions: this.numberOrNull(k, "configOptions", `${kp}.configOptions`),
        source: this.stringOrNull(k, "source", `${kp}.source`),
        buildKey: this.stringOrNull(k, "buildKey", `${kp}.buildKey`),
      },
      phaseMs,
    };
  }

  host(h: Obj, path: string): HostInfo {
    const kvmIn = this.object(h, "kvm", `${path}.kvm`);
    const kvm: Partial<Record<ArchName, KvmFact>> = {};
    for (const [arch, v] of Object.entries(kvmIn)) {
      if (!isArchName(arch)) continue;
      if (!isObject(v) || typeof v.usable !== "boolean") this.fail(`${path}.kvm.${arch}`, "a KVM verdict", v);
      const reason = v.reason;
      kvm[arch] = {
        usable: v.usable,
        ...(typeof reason === "string" ? { reason } : {}),
        probedAt: this.string(v, "probedAt", `${path}.kvm.${arch}.probedAt`),
      };
    }
    return {
      hostname: this.string(h, "hostname", `${path}.hostname`),
      os: this.stringOrNull(h, "os", `${path}.os`),
      cpuArch: this.stringOrNull(h, "cpuArch", `${path}.cpuArch`),
      cpuModel: this.stringOrNull(h, "cpuModel", `${path}.cpuModel`),
      cpus: this.numberOrNull(h, "cpus", `${path}.cpus`),
      memoryMiB: this.numberOrNull(h, "memoryMiB", `${path}.memoryMiB`),
      node: this.stringOrNull(h, "node", `${path}.node`),
      kvm,
    };
  }
}
