// `kho report --compare OLD NEW`: what changed between two runs, scenario by scenario (by id and
// arch; repeated runs of a scenario are taken together). A new failure makes the exit code 1
// so a nightly job can gate on it; timing changes are flagged but never fail.
import { isSuccess, type Verdict } from "./verdict.js";
import { resultName, seconds } from "./format.js";
import { VERDICTS, type ArchEntry, type ReportResult, type RunReportDoc } from "./schema.js";

/** A phase is flagged when it moved by more than this fraction of its old time... */
export const TIMING_RATIO = 0.2;
/** ...and by more than this many ms. */
export const TIMING_MIN_MS = 1000;

/** The total of a scenario, compared like a phase. */
export const TOTAL = "total";

export interface ScenarioState {
  /** "PASS", or "FAIL×1/PASS×2" when repeated runs disagreed. */
  readonly verdict: string;
  /** Whether any run of it failed (fail, error, xpass). */
  readonly failing: boolean;
  /** The first failing run's reason, else the first run's. */
  readonly reason?: string;
}

export interface VerdictChange {
  /** "memfd-basic.x86_64". */
  readonly name: string;
  /** Absent for a scenario the old run did not have. */
  readonly old?: ScenarioState;
  readonly new: ScenarioState;
}

export interface Presence {
  readonly name: string;
  readonly state: ScenarioState;
}

export interface TimingChange {
  readonly name: string;
  /** A phase name or "total". */
  readonly phase: string;
  readonly oldMs: number;
  readonly newMs: number;
  /** (new - old) / old. */
  readonly ratio: number;
  readonly flagged: boolean;
}

export interface SetupChange {
  readonly arch: string;
  readonly what: "kernel release" | "kernel image" | "kernel config" | "accelerator" | "QEMU";
  readonly old: string;
  readonly new: string;
}

export interface Comparison {
  /** Failing now, and not failing (or absent) before. */
  readonly newFailures: readonly VerdictChange[];
  /** Failing before, present and not failing now. */
  readonly fixed: readonly VerdictChange[];
  /** Every other change of verdict (pass -> skip, xfail -> pass...). */
  readonly verdictChanges: readonly VerdictChange[];
  readonly added: readonly Presence[];
  readonly removed: readonly Presence[];
  /** Every phase timing compared (scenarios whose verdict did not change), flagged or not. */
  readonly timings: readonly TimingChange[];
  readonly setup: readonly SetupChange[];
}

interface Group {
  readonly name: string;
  readonly runs: readonly ReportResult[];
  readonly state: ScenarioState;
}

const failing = (v: Verdict) => !isSuccess(v);

function groups(doc: RunReportDoc): Map<string, Group> {
  const byName = new Map<string, ReportResult[]>();
  for (const r of doc.results) {
    const name = resultName({ id: r.id, arch: r.arch });
    byName.set(name, [...(byName.get(name) ?? []), r]);
  }
  const out = new Map<string, Group>();
  for (const [name, runs] of byName) out.set(name, { name, runs, state: stateOf(runs) });
  return out;
}

function stateOf(runs: readonly ReportResult[]): ScenarioState {
  const counts = new Map<Verdict, number>();
  for (const r of runs) counts.set(r.verdict, (counts.get(r.verdict) ?? 0) + 1);
  const verdict =
    counts.size === 1
      ? (runs[0]?.verdict ?? "error").toUpperCase()
      : VERDICTS.filter((v) => counts.has(v))
          .map((v) => `${v.toUpperCase()}×${counts.get(v)}`)
          .join("/");
  const why = runs.find((r) => failing(r.verdict)) ?? runs[0];
  return {
    verdict,
    failing: runs.some((r) => failing(r.verdict)),
    ...(why?.reason ? { reason: why.reason } : {}),
  };
}

function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** Per phase (and total), the median over a scenario's runs that recorded it. */
function phaseTimes(runs: readonly ReportResult[]): Map<string, number> {
  const names = new Set(runs.flatMap((r) => Object.keys(r.phaseMs)));
  const out = new Map<string, number>();
  for (const p of names) {
    const m = median(runs.flatMap((r) => (r.phaseMs[p] !== undefined ? [r.phaseMs[p]] : [])));
    if (m !== undefined) out.set(p, m);
  }
  const total = median(runs.map((r) => r.totalMs).filter((ms) => ms > 0));
  if (total !== undefined) out.set(TOTAL, total);
  return out;
}

export function isFlagged(oldMs: number, newMs: number): boolean {
  const delta = Math.abs(newMs - oldMs);
  return delta > TIMING_MIN_MS && delta > TIMING_RATIO * oldMs;
}

function setupChanges(oldArches: readonly ArchEntry[], newArches: readonly ArchEntry[]): SetupChange[] {
  const out: SetupChange[] = [];
  for (const n of newArches) {
    const o = oldArches.find((a) => a.arch === n.arch);
    if (!o) continue;
    const fields: [SetupChange["what"], string | null, string | null][] = [
      ["kernel release", o.kernel.release, n.kernel.release],
      ["kernel image", o.kernel.imageSha256, n.kernel.imageSha256],
      ["kernel config", o.kernel.configSha256, n.kernel.configSha256],
      ["accelerator", o.accel, n.accel],
      ["QEMU", o.qemu.version, n.qemu.version],
    ];
    for (const [what, before, after] of fields) {
      // A fact the older report did not record is no change.
      if (before !== null && after !== null && before !== after) {
        const short = (s: string) =>
          what === "kernel image" || what === "kernel config" ? s.slice(0, 16) : s;
        out.push({ arch: n.arch, what, old: short(before), new: short(after) });
      }
    }
  }
  return out;
}

export function compareReports(oldDoc: RunReportDoc, newDoc: RunReportDoc): Comparison {
  const before = groups(oldDoc);
  const after = groups(newDoc);
  const newFailures: VerdictChange[] = [];
  const fixed: VerdictChange[] = [];
  const verdictChanges: VerdictChange[] = [];
  const added: Presence[] = [];
  const timings: TimingChange[] = [];
  for (const [name, n] of after) {
    const o = before.get(name);
    if (!o) {
      added.push({ name, state: n.state });
      if (n.state.failing) newFailures.push({ name, new: n.state });
      continue;
    }
    const change = { name, old: o.state, new: n.state };
    if (n.state.failing && !o.state.failing) newFailures.push(change);
    else if (o.state.failing && !n.state.failing) fixed.push(change);
    else if (o.state.verdict !== n.state.verdict) verdictChanges.push(change);
    if (o.state.verdict !== n.state.verdict) continue;
    const oldTimes = phaseTimes(o.runs);
    for (const [phase, newMs] of phaseTimes(n.runs)) {
      const oldMs = oldTimes.get(phase);
      if (oldMs === undefined) continue;
      timings.push({
        name,
        phase,
        oldMs,
        newMs,
        ratio: oldMs > 0 ? (newMs - oldMs) / oldMs : 0,
        flagged: isFlagged(oldMs, newMs),
      });
    }
  }
  const removed = [...before.values()]
    .filter((o) => !after.has(o.name))
    .map((o) => ({ name: o.name, state: o.state }));
  return {
    newFailures,
    fixed,
    verdictChanges,
    added,
    removed,
    timings,
    setup: setupChanges(oldDoc.arches, newDoc.arches),
  };
}

/** 1 when NEW has a failure OLD did not have, else 0. */
export function comparisonExitCode(c: Comparison): number {
  return c.newFailures.length > 0 ? 1 : 0;
}

const pct = (ratio: number) => `${ratio >= 0 ? "+" : ""}${Math.round(ratio * 100)}%`;
const delta = (ms: number) => `${ms >= 0 ? "+" : "-"}${seconds(Math.abs(ms))}`;

function changeLine(c: VerdictChange): string {
  const from = c.old ? c.old.verdict : "(not in OLD)";
  // A fix is explained by the failure it had; anything else by its reason now.
  const why = c.old?.failing && !c.new.failing ? (c.old.reason ? `was: ${c.old.reason}` : "") : c.new.reason;
  return `  ${c.name}: ${from} -> ${c.new.verdict}${why ? `: ${why}` : ""}`;
}

function section(title: string, lines: readonly string[]): string[] {
  return lines.length ? [`${title} (${lines.length}):`, ...lines] : [`${title}: none`];
}

/** The comparison as text; `all` lists every compared timing, not only the flagged ones. */
export function formatComparison(c: Comparison, labels: { old: string; new: string }, all = false): string {
  const out: string[] = [`OLD ${labels.old}`, `NEW ${labels.new}`, ""];
  if (c.setup.length) {
    out.push(
      ...section(
        "setup changes",
        c.setup.map((s) => `  ${s.arch} ${s.what}: ${s.old} -> ${s.new}`),
      ),
      "",
    );
  }
  out.push(...section("new failures", c.newFailures.map(changeLine)));
  out.push(...section("fixed", c.fixed.map(changeLine)));
  out.push(...section("other verdict changes", c.verdictChanges.map(changeLine)));
  out.push(
    ...section(
      "added",
      c.added.map((p) => `  ${p.name}: ${p.state.verdict}`),
    ),
  );
  out.push(
    ...section(
      "removed",
      c.removed.map((p) => `  ${p.name}: ${p.state.verdict}`),
    ),
  );
  const flagged = c.timings.filter((t) => t.flagged);
  const shown = all ? c.timings : flagged;
  const nameW = Math.max(0, ...shown.map((t) => t.name.length));
  const phaseW = Math.max(0, ...shown.map((t) => t.phase.length));
  const rows = shown.map(
    (t) =>
      `  ${t.flagged ? "!" : " "} ${t.name.padEnd(nameW)}  ${t.phase.padEnd(phaseW)}  ${seconds(t.oldMs).padStart(8)} -> ${seconds(t.newMs).padStart(8)}  ${delta(t.newMs - t.oldMs).padStart(9)} ${`(${pct(t.ratio)})`.padStart(7)}`,
  );
  const rule = `over ${Math.round(TIMING_RATIO * 100)}% and ${TIMING_MIN_MS / 1000} s`;
  out.push(
    "",
    all
      ? `timings (${c.timings.length} compared where the verdict did not change; ! = changed ${rule}):`
      : `timing changes ${rule}: ${flagged.length} of ${c.timings.length} compared${flagged.length ? ":" : ""}`,
    ...rows,
    "",
    c.newFailures.length
      ? `${c.newFailures.length} new failure${c.newFailures.length === 1 ? "" : "s"}`
      : "no new failures",
  );
  return out.join("\n") + "\n";
}
