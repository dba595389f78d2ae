// `kho report history DIR...`: what happened to each scenario over a series of runs (one a night,
// say). Per scenario and arch: the verdict of every run in order, where each new failure began
// and with which kernel, how flaky it is, and each phase's time across the runs. buildHistory is
// pure (reports in, document out); writeHistory reads the run folders and writes history.json
// and history.html.
import { access, mkdir, writeFile } from "node:fs/promises";
import { basename, join, relative, resolve, sep } from "node:path";
import { ARCH_NAMES } from "../arch.js";
import { HarnessError } from "../errors.js";
import { TOTAL } from "./compare.js";
import { runTime } from "./format.js";
import { renderHistoryHtml } from "./history-html.js";
import {
  HISTORY_SCHEMA,
  HistorySchema,
  type ArchPhases,
  type FlakeRate,
  type History,
  type HistoryCell,
  type HistoryKernel,
  type HistoryRow,
  type HistoryRun,
  type NewFailure,
  type PhaseSeries,
  type RunKernel,
} from "./history-schema.js";
import {
  BAD_INPUT_EXIT,
  loadReport,
  type KernelIdentity,
  type ReportResult,
  type RunReportDoc,
} from "./schema.js";
import type { Verdict } from "./verdict.js";

export * from "./history-schema.js";

/** One run folder's report. */
export interface HistoryInput {
  readonly doc: RunReportDoc;
  /** The run folder. */
  readonly dir: string;
}

/** What makes a scenario fail in the history: the verdicts that fail a run. */
const FAILING: ReadonlySet<Verdict> = new Set(["fail", "error", "xpass"]);
/** What counts as passing when counting pass/fail switches (skip and notrun are neither). */
const PASSING: ReadonlySet<Verdict> = new Set(["pass", "xfail"]);

export const isFailingVerdict = (v: Verdict): boolean => FAILING.has(v);

const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function archRank(arch: string): number {
  const i = (ARCH_NAMES as readonly string[]).indexOf(arch);
  return i < 0 ? ARCH_NAMES.length : i;
}
const byArch = (a: string, b: string) => archRank(a) - archRank(b) || byText(a, b);

/** When a run started, in ms since the epoch: startedAt, else the folder's name; null if neither. */
function startMs(run: HistoryInput): number | null {
  const t = runTime(run.doc, run.dir);
  const ms = t === undefined ? NaN : Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

/** Oldest first; runs with no time last; ties and those by folder name. */
export function orderRuns<T extends HistoryInput>(runs: readonly T[]): T[] {
  const keyed = runs.map((run) => ({ run, ms: startMs(run), name: basename(run.dir) }));
  keyed.sort((a, b) => {
    if (a.ms !== null && b.ms !== null && a.ms !== b.ms) return a.ms - b.ms;
    if ((a.ms === null) !== (b.ms === null)) return a.ms === null ? 1 : -1;
    return byText(a.name, b.name) || byText(a.run.dir, b.run.dir);
  });
  return keyed.map((k) => k.run);
}

// --- Kernels -----------------------------------------------------------------------------------

/** What tells a kernel apart: its image's hash, else what the report recorded of it. */
export function kernelKey(k: KernelIdentity): string {
  if (k.imageSha256) return `image:${k.imageSha256}`;
  if (k.buildKey) return `build:${k.buildKey}`;
  if (k.configSha256) return `config:${k.release}:${k.configSha256}`;
  return `path:${k.release}:${k.image}`;
}

/** "7.2.13 (ff770923)": the release and `n` characters of the key (more for an image path). */
function kernelLabel(k: KernelIdentity, n: number): string {
  const tag = k.imageSha256
    ? k.imageSha256.slice(0, n)
    : k.buildKey
      ? `build ${k.buildKey.slice(0, n)}`
      : k.configSha256
        ? `config ${k.configSha256.slice(0, n)}`
        : n >= 64
          ? k.image
          : k.image.split("/").filter(Boolean).slice(-2).join("/");
  return `${k.release} (${tag})`;
}

/** Labels for one arch's kernels: as short as they can be and still differ. */
function uniqueLabels(kernels: readonly KernelIdentity[]): string[] {
  let labels: string[] = [];
  for (const n of [8, 12, 16, 24, 32, 64]) {
    labels = kernels.map((k) => kernelLabel(k, n));
    if (new Set(labels).size === labels.length) return labels;
  }
  return labels.map((l, i) => `${l} #${i + 1}`);
}

function collectKernels(runs: readonly HistoryInput[]): HistoryKernel[] {
  const seen = new Map<string, { arch: string; key: string; kernel: KernelIdentity; runs: number[] }>();
  runs.forEach((run, i) => {
    for (const a of run.doc.arches) {
      const key = kernelKey(a.kernel);
      const id = `${a.arch}\0${key}`;
      const entry = seen.get(id) ?? { arch: a.arch, key, kernel: a.kernel, runs: [] };
      if (!entry.runs.includes(i)) entry.runs.push(i);
      seen.set(id, entry);
    }
  });
  const arches = [...new Set([...seen.values()].map((e) => e.arch))].sort(byArch);
  return arches.flatMap((arch) => {
    const entries = [...seen.values()].filter((e) => e.arch === arch);
    const labels = uniqueLabels(entries.map((e) => e.kernel));
    return entries.map((e, i): HistoryKernel => ({
      arch,
      key: e.key,
      label: labels[i] ?? e.key,
      release: e.kernel.release,
      source: e.kernel.source,
      buildKey: e.kernel.buildKey,
      imageSha256: e.kernel.imageSha256,
      configSha256: e.kernel.configSha256,
      image: e.kernel.image,
      runs: e.runs,
    }));
  });
}

function runKernels(runs: readonly HistoryInput[], kernels: readonly HistoryKernel[]): RunKernel[][] {
  const last = new Map<string, string>();
  return runs.map((run) =>
    run.doc.arches.map((a) => {
      const key = kernelKey(a.kernel);
      const label = kernels.find((k) => k.arch === a.arch && k.key === key)?.label ?? key;
      const before = last.get(a.arch);
      last.set(a.arch, key);
      return { arch: a.arch, key, label, changed: before !== undefined && before !== key };
    }),
  );
}

// --- Rows --------------------------------------------------------------------------------------

function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? null) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

function attemptLine(r: ReportResult, i: number): string {
  return `#${r.attempt ?? i + 1} ${r.verdict}${r.reason ? `: ${r.reason}` : ""}`;
}

/** A run's results of one scenario on one arch (its attempts, in order) as a timeline cell. */
function cellOf(results: readonly ReportResult[]): Omit<HistoryCell, "newFailure"> {
  const first = results[0];
  if (!first) return { state: "absent", attempts: [], failing: false };
  const attempts = results.map((r) => r.verdict);
  const agree = attempts.every((v) => v === first.verdict);
  const failing = attempts.some(isFailingVerdict);
  const reason = agree
    ? (results.find((r) => isFailingVerdict(r.verdict)) ?? first).reason
    : results.map(attemptLine).join("; ");
  return {
    state: agree ? first.verdict : "flaky",
    attempts,
    failing,
    ...(reason ? { reason } : {}),
  };
}

function flakeRate(cells: readonly HistoryCell[]): FlakeRate {
  const present = cells.filter((c) => c.state !== "absent");
  const flakyRuns = present.filter((c) => c.state === "flaky").length;
  const outcomes = cells
    .flatMap((c) => c.attempts)
    .filter((v) => FAILING.has(v) || PASSING.has(v))
    .map(isFailingVerdict);
  const switches = outcomes.filter((f, i) => i > 0 && f !== outcomes[i - 1]).length;
  return {
    presentRuns: present.length,
    flakyRuns,
    flakyRunRate: present.length ? flakyRuns / present.length : null,
    outcomes: outcomes.length,
    switches,
    switchRate: outcomes.length > 1 ? switches / (outcomes.length - 1) : null,
  };
}

/** Each phase (first-seen order, then the total) with its median over the attempts of each run. */
function phaseSeries(perRun: readonly (readonly ReportResult[])[]): PhaseSeries[] {
  const names: string[] = [];
  for (const results of perRun)
    for (const r of results)
      for (const p of Object.keys(r.phaseMs)) if (p !== TOTAL && !names.includes(p)) names.push(p);
  const series = names.map((phase) => ({
    phase,
    ms: perRun.map((results) =>
      median(results.flatMap((r) => (r.phaseMs[phase] === undefined ? [] : [r.phaseMs[phase]]))),
    ),
  }));
  const total = perRun.map((results) => median(results.map((r) => r.totalMs).filter((ms) => ms > 0)));
  return [...series, { phase: TOTAL, ms: total }];
}

function buildRow(
  id: string,
  arch: string,
  runs: readonly HistoryInput[],
  kernels: readonly RunKernel[][],
): HistoryRow {
  const perRun = runs.map((run) =>
    run.doc.results
      .filter((r) => r.id === id && r.arch === arch)
      .map((r, i) => ({ r, i }))
      .sort((a, b) => (a.r.attempt ?? 0) - (b.r.attempt ?? 0) || a.i - b.i)
      .map(({ r }) => r),
  );
  const cells: HistoryCell[] = [];
  const newFailures: NewFailure[] = [];
  perRun.forEach((results, i) => {
    const cell = cellOf(results);
    const before = cells[i - 1];
    const isNew = cell.failing && before !== undefined && !before.failing;
    cells.push({ ...cell, newFailure: isNew });
    if (isNew) {
      const kernel = kernels[i]?.find((k) => k.arch === arch)?.label ?? null;
      newFailures.push({
        run: i,
        kernel,
        state: cell.state,
        ...(cell.reason ? { reason: cell.reason } : {}),
      });
    }
  });
  return {
    id,
    arch,
    cells,
    failingAtStart: cells[0]?.failing ?? false,
    newFailures,
    flake: flakeRate(cells),
    phases: phaseSeries(perRun),
  };
}

/** Per arch, each phase summed over the arch's rows in each run. */
function archPhases(arch: string, rows: readonly HistoryRow[], runCount: number): ArchPhases {
  const mine = rows.filter((r) => r.arch === arch);
  const names: string[] = [];
  for (let i = 0; i < runCount; i++)
    for (const row of mine)
      for (const s of row.phases)
        if (s.phase !== TOTAL && s.ms[i] != null && !names.includes(s.phase)) names.push(s.phase);
  const sum = (phase: string, i: number): number | null => {
    const values = mine.flatMap((row) => {
      const v = row.phases.find((s) => s.phase === phase)?.ms[i];
      return v == null ? [] : [v];
    });
    return values.length ? values.reduce((a, b) => a + b, 0) : null;
  };
  const runIdx = Array.from({ length: runCount }, (_, i) => i);
  return {
    arch,
    scenarios: runIdx.map(
      (i) => mine.filter((row) => row.phases.find((s) => s.phase === TOTAL)?.ms[i] != null).length,
    ),
    phases: [...names, TOTAL].map((phase) => ({ phase, ms: runIdx.map((i) => sum(phase, i)) })),
  };
}

/** The history of a set of runs (in any order: they are ordered by start time). */
export function buildHistory(inputs: readonly HistoryInput[]): History {
  const runs = orderRuns(inputs);
  const kernels = collectKernels(runs);
  const perRunKernels = runKernels(runs, kernels);
  const historyRuns = runs.map((run, i): HistoryRun => ({
    dir: run.dir,
    startedAt: run.doc.startedAt,
    time: runTime(run.doc, run.dir) ?? null,
    startedFrom: run.doc.startedFrom,
    hostname: run.doc.host.hostname,
    wallMs: run.doc.wallMs,
    exitCode: run.doc.exitCode,
    totals: run.doc.totals,
    kernels: perRunKernels[i] ?? [],
  }));
  const pairs = new Map<string, { id: string; arch: string }>();
  for (const run of runs) for (const r of run.doc.results) pairs.set(`${r.arch}\0${r.id}`, r);
  const rows = [...pairs.values()]
    .sort((a, b) => byArch(a.arch, b.arch) || byText(a.id, b.id))
    .map(({ id, arch }) => buildRow(id, arch, runs, perRunKernels));
  const arches = [...new Set(rows.map((r) => r.arch))].sort(byArch);
  return {
    schema: HISTORY_SCHEMA,
    runs: historyRuns,
    kernels,
    rows,
    arches: arches.map((arch) => archPhases(arch, rows, runs.length)),
  };
}

// --- Files -------------------------------------------------------------------------------------

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * Reads each run folder's report.json (any order; a folder given twice counts once), writes
 * history.json and history.html into `outDir` (made if missing) and returns their paths.
 */
export async function writeHistory(
  dirs: readonly string[],
  outDir: string,
): Promise<{ json: string; html: string }> {
  if (dirs.length === 0) {
    throw new HarnessError(
      "kho report history needs at least one run folder (out/runs/<time>/), for example: kho report history out/runs/*",
      [],
      BAD_INPUT_EXIT,
    );
  }
  const inputs: HistoryInput[] = [];
  const seen = new Set<string>();
  for (const d of dirs) {
    const loaded = await loadReport(d);
    const path = resolve(loaded.path);
    if (seen.has(path)) continue;
    seen.add(path);
    inputs.push({ doc: loaded.doc, dir: loaded.dir });
  }
  // Validated before it is written: the file is what HistorySchema says.
  const history: History = HistorySchema.parse(buildHistory(inputs));
  await mkdir(outDir, { recursive: true });
  const summaries = await Promise.all(
    history.runs.map(async (run) => {
      const page = join(run.dir, "summary.html");
      return (await exists(page)) ? relative(outDir, page).split(sep).join("/") : undefined;
    }),
  );
  const json = join(outDir, "history.json");
  const html = join(outDir, "history.html");
  await writeFile(json, JSON.stringify(history, null, 2) + "\n");
  await writeFile(html, renderHistoryHtml(history, { summaries }));
  return { json, html };
}
