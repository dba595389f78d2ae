// A run as KernelCI KCIDB data (schema v5.3, src/report/kcidb-schema.ts), for `kho report kcidb`:
//   - one checkout per distinct kernel source identity, its id a hash of that identity (not of
//     the config: the arches built from one source are builds of one checkout, as KCIDB models
//     it; each build names its config). "git <sha>" gives git_commit_hash (the repository URL is
//     not recorded, so there is none), a Debian source package gives tree_name and the package
//     in misc; a kernel given with --kernel stands for a source of its own, by its image hash;
//   - one build per arch: PASS for an arch the run set up, FAIL for an arch whose setup failed
//     (its stage, message and evidence in misc and log_excerpt; its checkout is the run's
//     "unknown-source" one, since a failed setup records no kernel);
//   - one test per result, at path `kho.<scenario>.<arch>` (the scenario id with every character
//     the KCIDB path pattern does not allow turned into `_`). A repeated run (--repeat) keeps the
//     path, so KCIDB sees the attempts as runs of one test: the attempt is in misc.attempt and in
//     the test's id (`/runK`), which stays unique. Every test starts at the run's start (the
//     report has no per-scenario start time) and lasts the result's totalMs.
// Verdicts: pass PASS, fail FAIL, xpass FAIL, xfail PASS, skip SKIP, notrun MISS, error ERROR;
// misc.verdict keeps ours, misc.expected_failure marks xfail and xpass. Logs and artifacts are
// URLs into the run folder: `logUrlBase` plus the path in the folder when the folder is
// published, absolute file:// URLs on this machine otherwise.
import { readdir, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { z } from "zod";
import { HarnessError } from "../errors.js";
import { describeIssue } from "../util/zod-issue.js";
import { sha256 } from "../util/hash.js";
import { artifactsLink, checkLine, runTime } from "./format.js";
import {
  KCIDB_VERSION,
  KcidbDocSchema,
  ORIGIN_RE,
  PATH_RE,
  URI_RE,
  type KcidbBuild,
  type KcidbCheckout,
  type KcidbDoc,
  type KcidbResource,
  type KcidbStatus,
  type KcidbTest,
} from "./kcidb-schema.js";
import {
  BAD_INPUT_EXIT,
  loadReport,
  type ArchEntry,
  type ReportResult,
  type RunReportDoc,
} from "./schema.js";
import type { SetupFailure, Verdict } from "./verdict.js";

export type { KcidbDoc } from "./kcidb-schema.js";

/** The file `writeKcidb` writes into the run folder. */
export const KCIDB_FILE = "kcidb.json";
/** The origin when none is given. */
export const DEFAULT_KCIDB_ORIGIN = "kho";
/** How many evidence lines go into a test's or failed build's misc. */
const EVIDENCE_LINES = 20;
/** KCIDB's limit on log_excerpt. */
const EXCERPT_CHARS = 16384;
/** The file a test's log_url names (every guest's console, as the summaries link it). */
const CONSOLE_LOG = "console.log";

export const KCIDB_STATUS: Readonly<Record<Verdict, KcidbStatus>> = {
  pass: "PASS",
  fail: "FAIL",
  xpass: "FAIL",
  xfail: "PASS",
  skip: "SKIP",
  notrun: "MISS",
  error: "ERROR",
};

export interface KcidbOptions {
  /** The submitting CI system's name ([a-z0-9_]+; agreed with the KCIDB maintainers). */
  readonly origin: string;
  /** What makes this run's build and test ids unique (writeKcidb: the run folder's name). */
  readonly runId: string;
  /** The run folder; artifacts are referred to by their path in it. */
  readonly runDir: string;
  /**
   * Where the run folder is published ("https://ci.example/runs/<time>/"): log and artifact URLs
   * are this plus the path in the folder. Without it, file:// URLs of the folder on this machine.
   */
  readonly logUrlBase?: string;
  /**
   * The files in each result's artifacts folder, by that folder's path in the run folder
   * (writeKcidb lists them): console.log is the log_url, the rest output_files. Without it,
   * log_url is console.log and there are no output_files; a folder listed as [] has neither.
   */
  readonly artifactFiles?: Readonly<Record<string, readonly string[]>>;
}

/** The run `doc` (from `opts.runDir`) as one KCIDB document. Pure: reads no file. */
export function kcidbFromRun(doc: RunReportDoc, opts: KcidbOptions): KcidbDoc {
  const { origin } = opts;
  if (!ORIGIN_RE.test(origin)) {
    throw new HarnessError(
      `the KCIDB origin "${origin}" should be a name of lower-case letters, digits and _ (${ORIGIN_RE.source})`,
      [],
      BAD_INPUT_EXIT,
    );
  }
  // The base as a URL prints it (%-escaped), so the URLs made from it are URIs.
  const urlOpts: KcidbOptions =
    opts.logUrlBase === undefined ? opts : { ...opts, logUrlBase: urlBase(opts.logUrlBase) };
  const runId = noNul(opts.runId);
  const startTime = runTime(doc, opts.runDir);
  const buildId = (arch: string) => `${origin}:${runId}/${noNul(arch)}`;

  const checkouts = new Map<string, KcidbCheckout>();
  const builds: KcidbBuild[] = [];
  for (const a of doc.arches) {
    const checkout = checkoutOf(a, origin);
    const known = checkouts.get(checkout.id);
    checkouts.set(checkout.id, known ? withRelease(known, a.kernel.release) : checkout);
    builds.push(archBuild(a, { id: buildId(a.arch), origin, checkoutId: checkout.id, startTime }));
  }
  if (doc.setupFailures.length > 0) {
    const unknown: KcidbCheckout = {
      id: `${origin}:${runId}/unknown-source`,
      origin,
      comment: "the kernel source is not known: an arch setup failed before the report recorded its kernel",
    };
    checkouts.set(unknown.id, unknown);
    for (const f of doc.setupFailures) {
      builds.push(failedBuild(f, { id: buildId(f.arch), origin, checkoutId: unknown.id, startTime }));
    }
  }

  const seen = new Set<string>();
  const tests = doc.results.map((r) => {
    // Unique even if a report held the same result twice (KCIDB would merge the two).
    const base = `${buildId(r.arch)}/${noNul(r.id)}${r.attempt !== undefined ? `/run${r.attempt}` : ""}`;
    let id = base;
    for (let n = 2; seen.has(id); n++) id = `${base}#${n}`;
    seen.add(id);
    return testOf(r, doc, urlOpts, { id, buildId: buildId(r.arch), startTime });
  });

  return {
    version: { ...KCIDB_VERSION },
    checkouts: [...checkouts.values()],
    builds,
    tests,
  };
}

/** `json` as KCIDB v5.3 says, or one sentence naming the first wrong field. */
export function validateKcidb(json: unknown, name = "the KCIDB document"): KcidbDoc {
  const r = KcidbDocSchema.safeParse(json, { reportInput: true });
  if (r.success) return r.data;
  const [first, ...rest] = r.error.issues;
  const more = rest.length ? ` (and ${rest.length} more problem${rest.length === 1 ? "" : "s"})` : "";
  const problem = !first
    ? "unknown problem"
    : first.code === "unrecognized_keys"
      ? `${z.core.toDotPath([...first.path, first.keys[0] ?? "?"])} is not a property KCIDB v${KCIDB_VERSION.major}.${KCIDB_VERSION.minor} allows there`
      : describeIssue(first);
  throw new HarnessError(
    `${name} is not valid KCIDB v${KCIDB_VERSION.major}.${KCIDB_VERSION.minor}: ${problem}${more}`,
    [],
    BAD_INPUT_EXIT,
  );
}

export interface WriteKcidbOptions {
  /** Default "kho". */
  readonly origin?: string;
  /** Default: the run folder's name. */
  readonly runId?: string;
  readonly logUrlBase?: string;
}

/** Writes `<run folder>/kcidb.json` from its report.json (checked against the schema first). */
export async function writeKcidb(runDir: string, opts: WriteKcidbOptions = {}): Promise<string> {
  const loaded = await loadReport(runDir);
  const dir = resolve(loaded.dir);
  const artifactFiles: Record<string, readonly string[]> = {};
  for (const r of loaded.doc.results) {
    const rel = artifactsLink(r, dir);
    if (rel === undefined || rel in artifactFiles) continue;
    const entries = await readdir(join(dir, rel), { withFileTypes: true }).catch(() => []);
    artifactFiles[rel] = entries
      .filter((e) => e.isFile())
      .map((e) => e.name)
      .sort();
  }
  const doc = kcidbFromRun(loaded.doc, {
    origin: opts.origin ?? DEFAULT_KCIDB_ORIGIN,
    runId: opts.runId ?? basename(dir),
    runDir: dir,
    artifactFiles,
    ...(opts.logUrlBase !== undefined ? { logUrlBase: opts.logUrlBase } : {}),
  });
  validateKcidb(doc, `the KCIDB document made from ${loaded.path}`);
  const path = join(dir, KCIDB_FILE);
  await writeFile(path, `${JSON.stringify(doc, null, 2)}\n`);
  return path;
}

// --- Pieces --------------------------------------------------------------------------------------

/** What a kernel source identity (KernelIdentity.source) says, split into its parts. */
export interface SourceParts {
  /** "git": a commit (+ dirty diff); "package": a Debian source package; "other": as given. */
  readonly kind: "git" | "package" | "other";
  readonly commit?: string;
  readonly dirty?: string;
  readonly packageName?: string;
  readonly packageVersion?: string;
  /** Patches the harness applied on top (images/patches/), in order, and their combined id. */
  readonly patches?: readonly string[];
  readonly patchesId?: string;
}

/** "git <sha>[+dirty-<h>]", "linux-source-7.2 7.2.13-1", "files <h>", each maybe "+ a.patch+b.patch (<id>)". */
export function sourceParts(source: string): SourceParts {
  const patched = / \+ (.+) \(([0-9a-f]+)\)$/.exec(source);
  const base = patched ? source.slice(0, patched.index) : source;
  const patches = patched ? { patches: (patched[1] ?? "").split("+"), patchesId: patched[2] ?? "" } : {};
  const git = /^git ([0-9a-f]{40})(?:\+dirty-([0-9a-f]+))?$/.exec(base);
  if (git) return { kind: "git", commit: git[1] ?? "", ...(git[2] ? { dirty: git[2] } : {}), ...patches };
  const pkg = /^(\S+) (\S+)$/.exec(base);
  if (pkg && pkg[1] !== "files") {
    return { kind: "package", packageName: pkg[1] ?? "", packageVersion: pkg[2] ?? "", ...patches };
  }
  return { kind: "other", ...patches };
}

function checkoutOf(a: ArchEntry, origin: string): KcidbCheckout {
  const k = a.kernel;
  // A kernel given with --kernel (or from an old report) has no known source: its image stands in.
  const identity = k.source !== null ? `source ${k.source}` : `image ${k.imageSha256 ?? k.image}`;
  const id = `${origin}:${sha256(identity).slice(0, 16)}`;
  if (k.source === null) {
    return {
      id,
      origin,
      comment: `Linux ${noNul(k.release)}, source not recorded (kernel image ${noNul(basename(k.image))})`,
      misc: compact({ image_sha256: k.imageSha256, releases: [k.release] }),
    };
  }
  const s = sourceParts(k.source);
  return {
    id,
    origin,
    ...(s.kind === "git" ? { git_commit_hash: s.commit } : {}),
    ...(s.kind === "package" ? { tree_name: noNul(s.packageName ?? "") } : {}),
    comment: noNul(k.source),
    valid: true,
    misc: compact({
      source: k.source,
      package: s.packageName,
      package_version: s.packageVersion,
      dirty: s.dirty,
      patches: s.patches,
      patches_id: s.patchesId,
      releases: [k.release],
    }),
  };
}

/** A second arch built from the same source: its release joins the checkout's. */
function withRelease(c: KcidbCheckout, release: string): KcidbCheckout {
  const releases = Array.isArray(c.misc?.releases) ? (c.misc.releases as string[]) : [];
  if (releases.includes(release)) return c;
  return { ...c, misc: { ...c.misc, releases: [...releases, release] } };
}

interface BuildRefs {
  readonly id: string;
  readonly origin: string;
  readonly checkoutId: string;
  readonly startTime: string | undefined;
}

function archBuild(a: ArchEntry, refs: BuildRefs): KcidbBuild {
  const k = a.kernel;
  const kernelMs = a.phaseMs.kernel;
  return {
    id: refs.id,
    origin: refs.origin,
    checkout_id: refs.checkoutId,
    architecture: archName(a.arch),
    status: "PASS",
    ...(refs.startTime ? { start_time: refs.startTime } : {}),
    // The kernel phase: the build, or the cache lookup of a kernel built before.
    ...(kernelMs !== undefined ? { duration: kernelMs / 1000 } : {}),
    ...(k.configSha256 ? { config_name: `config-${k.configSha256.slice(0, 12)}` } : {}),
    comment: noNul(
      `Linux ${k.release} for ${a.arch}${k.source ? ` from ${k.source}` : ""}${k.buildKey ? ` (kernel cache ${k.buildKey})` : ""}`,
    ),
    misc: compact({
      release: k.release,
      image: basename(k.image),
      image_sha256: k.imageSha256,
      next_image: k.next !== k.image ? basename(k.next) : undefined,
      config_sha256: k.configSha256,
      config_options: k.configOptions,
      build_key: k.buildKey,
      source: k.source,
      setup_phase_ms: a.phaseMs,
    }),
  };
}

function failedBuild(f: SetupFailure, refs: BuildRefs): KcidbBuild {
  const excerpt = evidenceText(f.evidence);
  return {
    id: refs.id,
    origin: refs.origin,
    checkout_id: refs.checkoutId,
    architecture: archName(f.arch),
    status: "FAIL",
    ...(refs.startTime ? { start_time: refs.startTime } : {}),
    comment: noNul(`the ${f.arch} setup failed (${f.stage}): ${f.message}`),
    ...(excerpt ? { log_excerpt: excerpt } : {}),
    misc: compact({
      stage: f.stage,
      message: f.message,
      evidence: firstLines(f.evidence),
      not_run: f.notRun,
    }),
  };
}

interface TestRefs {
  readonly id: string;
  readonly buildId: string;
  readonly startTime: string | undefined;
}

function testOf(r: ReportResult, doc: RunReportDoc, opts: KcidbOptions, refs: TestRefs): KcidbTest {
  const rel = artifactsLink(r, opts.runDir);
  const listed = rel !== undefined ? opts.artifactFiles?.[rel] : undefined;
  const hasConsole = rel !== undefined && (listed === undefined || listed.includes(CONSOLE_LOG));
  const outputs: KcidbResource[] =
    rel !== undefined && listed
      ? listed
          .filter((name) => name !== CONSOLE_LOG && /^[^/\0]+$/.test(name))
          .map((name) => ({ name, url: runFileUrl(opts, `${rel}/${name}`) }))
      : [];
  const excerpt = evidenceText(r.evidence ?? []);
  return {
    id: refs.id,
    build_id: refs.buildId,
    origin: opts.origin,
    path: testPath(r.id, r.arch),
    status: KCIDB_STATUS[r.verdict],
    comment: noNul(`${r.id} on ${r.arch}: ${r.verdict}${r.reason ? `: ${r.reason}` : ""}`),
    ...(refs.startTime ? { start_time: refs.startTime } : {}),
    duration: r.totalMs / 1000,
    environment: environmentOf(r.arch, doc),
    ...(hasConsole ? { log_url: runFileUrl(opts, `${rel}/${CONSOLE_LOG}`) } : {}),
    ...(excerpt ? { log_excerpt: excerpt } : {}),
    ...(outputs.length ? { output_files: outputs } : {}),
    misc: compact({
      scenario: r.id,
      verdict: r.verdict,
      reason: r.reason,
      expected_failure: r.verdict === "xfail" || r.verdict === "xpass" ? true : undefined,
      attempt: r.attempt,
      evidence: firstLines(r.evidence ?? []),
      checks: r.checks?.length ? r.checks.map(checkLine) : undefined,
      not_run_because: r.notRunBecause,
      disk_full: r.diskFull,
      phase_ms: r.phaseMs,
      artifacts: rel,
    }),
  };
}

/** `kho.<scenario>.<arch>`, each name with the characters KCIDB paths do not allow turned into _. */
export function testPath(scenario: string, arch: string): string {
  const name = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, "_") || "_";
  const path = `kho.${name(scenario)}.${name(arch)}`;
  if (!PATH_RE.test(path)) throw new Error(`bug: ${path} is not a KCIDB path`);
  return path;
}

function environmentOf(arch: string, doc: RunReportDoc): KcidbTest["environment"] {
  const a = doc.arches.find((x) => x.arch === arch);
  const h = doc.host;
  const kvm = (h.kvm as Readonly<Record<string, unknown>>)[arch];
  return {
    comment: noNul(
      a?.accel === "machine"
        ? `the machine ${a.accelReason ?? "?"}`
        : a
          ? `QEMU ${a.qemu.version ?? "(version unknown)"} ${a.accel} on ${h.hostname}`
          : `${h.hostname} (no guest: the ${arch} setup failed)`,
    ),
    misc: compact({
      host: h.hostname,
      os: h.os,
      cpu_arch: h.cpuArch,
      cpu_model: h.cpuModel,
      cpus: h.cpus,
      memory_mib: h.memoryMiB,
      node: h.node,
      kvm,
      qemu_binary: a?.qemu.binary || undefined,
      qemu_banner: a?.qemu.banner,
      accel: a?.accel,
      accel_reason: a?.accelReason,
    }),
  };
}

/** The published run folder's URL, %-escaped where a URL needs it; one sentence if it is none. */
function urlBase(base: string): string {
  const href = URL.canParse(base) ? new URL(base).href : undefined;
  if (href === undefined || !URI_RE.test(href)) {
    throw new HarnessError(
      `the log URL base "${base}" is not a URL: give the address the run folder is published at (https://host/runs/<time>/)`,
      [],
      BAD_INPUT_EXIT,
    );
  }
  return href;
}

/** A file of the run folder as a URL: under logUrlBase, else file:// on this machine. */
function runFileUrl(opts: KcidbOptions, rel: string): string {
  const encoded = (path: string) => path.split("/").map(encodeURIComponent).join("/");
  if (opts.logUrlBase !== undefined) return `${opts.logUrlBase.replace(/\/+$/, "")}/${encoded(rel)}`;
  return `file://${encoded(join(resolve(opts.runDir), rel))}`;
}

/** KCIDB architecture names are [a-z0-9_]: ours (x86_64, arm64) already are. */
function archName(arch: string): string {
  return arch.toLowerCase().replace(/[^a-z0-9_]/g, "_");
}

/** KCIDB strings may not hold NUL. */
function noNul(s: string): string {
  return s.replace(/\0/g, "\\0");
}

function firstLines(lines: readonly string[]): string[] | undefined {
  const kept = lines.slice(0, EVIDENCE_LINES).map(noNul);
  return kept.some((l) => l.trim()) ? kept : undefined;
}

function evidenceText(lines: readonly string[]): string | undefined {
  const t = noNul(lines.join("\n"));
  return t.trim() ? t.slice(0, EXCERPT_CHARS) : undefined;
}

/** misc without the facts nobody recorded (KCIDB has no nulls; misc keeps to that). */
function compact(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null));
}
