// Verdicts as CI tools and kselftest understand them. An expected failure (xfail) names the
// kernel behaviour it expects; if the kernel gets fixed the result turns into xpass, which is
// reported loudly (and counts as a failure) so the expectation gets updated.
import type { Fact } from "../api/facts.js";
import type { CheckRecord } from "../api/findings.js";
import type { KernelUnderTest } from "../api/context.js";
import type { ArchName } from "../arch.js";
import type { BootTiming } from "../session/boot-timeline.js";

/** `notrun`: the scenario never started because a setup it needed failed (its arch's kernel,
 *  image or tools); that failure is reported once, as a SetupFailure, and not per scenario. */
export type Verdict = "pass" | "fail" | "skip" | "xfail" | "xpass" | "error" | "notrun";

/** A setup shared by every scenario of an arch that failed: reported once, with its evidence. */
export interface SetupFailure {
  readonly arch: string;
  /** Which setup: "kernel", "inspect", "image", "boot-files". */
  readonly stage: string;
  readonly message: string;
  readonly evidence: readonly string[];
  /** How many results it left not run. */
  readonly notRun: number;
}

export interface ScenarioResult {
  readonly id: string;
  readonly arch: string;
  /** Which run of the scenario this is (1-based), when the run repeats scenarios. */
  readonly attempt?: number;
  readonly verdict: Verdict;
  /** Why: the failed check, the skip reason, the expected-failure reason. */
  readonly reason?: string;
  /** Evidence lines (console excerpt, diff of expected vs actual). */
  readonly evidence?: readonly string[];
  /** Wall time of each phase in ms: boot, ssh, preserve, dump, kexec, checks... */
  readonly phaseMs: Readonly<Record<string, number>>;
  readonly totalMs: number;
  /** Every boot of the guest cut at its console landmarks (firmware, kernel, init, ssh...). */
  readonly boots?: readonly BootTiming[];
  /** What the scenario established, typed (its notes say the same in words). */
  readonly facts?: readonly Fact[];
  /** Every check the scenario planned: passed, failed or not done (and whether that was accepted). */
  readonly checks?: readonly CheckRecord[];
  /** Where this scenario's artifacts are. */
  readonly artifactsDir?: string;
  /** A write of this scenario's failed for want of space: the run stopped starting guests. */
  readonly diskFull?: boolean;
  /** For `notrun`: the arch whose setup failure stopped it (RunReport.setupFailures). */
  readonly notRunBecause?: { readonly setupArch: string; readonly stage: string };
}

/** kselftest exit codes: 0 all passed, 1 a failure, 4 only skips. */
export function exitCodeFor(results: readonly ScenarioResult[]): number {
  if (
    results.some(
      (r) => r.verdict === "fail" || r.verdict === "error" || r.verdict === "xpass" || r.verdict === "notrun",
    )
  )
    return 1;
  if (results.length > 0 && results.every((r) => r.verdict === "skip")) return 4;
  return 0;
}

export function isSuccess(v: Verdict): boolean {
  return v === "pass" || v === "xfail" || v === "skip";
}

export interface Flake {
  readonly id: string;
  readonly arch: string;
  /** How many runs ended in each verdict. */
  readonly verdicts: Partial<Record<Verdict, number>>;
}

/** Scenarios whose repeated runs did not all end in the same verdict. */
export function findFlakes(results: readonly ScenarioResult[]): Flake[] {
  const groups = new Map<string, ScenarioResult[]>();
  for (const r of results) {
    const key = `${r.id}\0${r.arch}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const flakes: Flake[] = [];
  for (const runs of groups.values()) {
    const verdicts: Partial<Record<Verdict, number>> = {};
    for (const r of runs) verdicts[r.verdict] = (verdicts[r.verdict] ?? 0) + 1;
    const first = runs[0];
    if (first && Object.keys(verdicts).length > 1) flakes.push({ id: first.id, arch: first.arch, verdicts });
  }
  return flakes;
}

/** An arch the run set up: its kernel, accelerator and setup phases. */
export interface ArchSetup {
  readonly arch: ArchName;
  readonly kernel: KernelUnderTest;
  /** "machine" on a machine target (kho run --target), which has no QEMU. */
  readonly accel: "kvm" | "tcg" | "machine";
  /** Why that accelerator (the KVM probe's verdict). */
  readonly accelReason: string;
  readonly phaseMs: Record<string, number>;
}

/** A run that did one shard of a selection (`--shard K/N`), as `kho report merge` needs it. */
export interface ShardRecord {
  /** 1-based. */
  readonly index: number;
  readonly count: number;
  /** A hash of every unit of the selection: equal for the shards of one selection. */
  readonly selection: string;
  /** The durations file the split was made from. */
  readonly durations: string;
  /** The units this shard ran (unit keys: `arch:scenario+scenario`, `#attempt` when repeated). */
  readonly units: readonly string[];
  /** Every unit of the selection, in suite order. */
  readonly allUnits: readonly string[];
  /** The split's estimate of this shard's guest time. */
  readonly estimatedMs: number;
}

/** What a run gives the reports. */
export interface RunReport {
  readonly results: ScenarioResult[];
  readonly setups: ArchSetup[];
  /** Setups shared by every scenario of an arch that failed, each reported once. */
  readonly setupFailures: SetupFailure[];
  /** Set when the run did one shard of its selection. */
  readonly shard?: ShardRecord;
}
