// `--shard K/N`: which part of a run's work this machine does, so that a CI's job matrix can
// spread one suite over N jobs and `kho report merge` puts the N run folders back together.
//
// The split is made before any kernel is built or any guest is booted, from the selection alone
// (arches, scenarios, repeats, --isolate) and a durations file: never from this machine's own
// history, so every job of the matrix computes the same split. The unit is what shares a guest:
// the scenarios that could share one guest (same arch, attempt, KHO setting, memory class and
// NUMA layout; see shareGroup) always land on the same shard, whatever the kernel later decides
// about each of them. The units are dealt longest first to the least loaded shard (LPT), ties
// broken by the unit's key, which gives the same answer everywhere.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { ArchName } from "../arch.js";
import type { GuestBoot, Scenario } from "../api/scenario.js";
import { HarnessError } from "../errors.js";
import type { ShardRecord } from "../report/verdict.js";
import { unitKey, type UnitDurations } from "./unit-durations.js";

/** Shard `index` of `count`, 1-based as the user writes it (`--shard 2/3`). */
export interface ShardSpec {
  readonly index: number;
  readonly count: number;
}

/** The most shards a suite is cut into (more would leave most of them empty). */
export const MAX_SHARDS = 256;

export function parseShard(text: string): ShardSpec {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || count > MAX_SHARDS || index < 1 || index > count)
    throw new HarnessError(
      `--shard ${text}: give K/N with 1 <= K <= N <= ${MAX_SHARDS}, for example --shard 1/2`,
    );
  return { index, count };
}

/** The durations file shipped with the harness: recorded on the reference host (README). */
export const SHIPPED_DURATIONS = fileURLToPath(new URL("../../ci/unit-durations.json", import.meta.url));

/** A durations file (unit key -> ms, as `kho run` writes into its run folder); one sentence if bad. */
export async function loadDurationsFile(path: string): Promise<UnitDurations> {
  const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw new HarnessError(`--durations ${path}: cannot read it (${e.code ?? e.message})`);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new HarnessError(`--durations ${path} is not JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new HarnessError(`--durations ${path}: expected an object of unit key -> milliseconds`);
  const entries = Object.entries(parsed);
  const bad = entries.find(([, v]) => typeof v !== "number" || !Number.isFinite(v) || v < 0);
  if (bad)
    throw new HarnessError(
      `--durations ${path}: "${bad[0]}" has ${JSON.stringify(bad[1])}, expected milliseconds (a number >= 0)`,
    );
  return new Map(entries as [string, number][]);
}

/**
 * The memory class of a boot: shareable boots group by KHO on or off, their memory adds up to
 * MERGED_MEMORY_MIB (no shareable scenario's checks depend on the amount, and a guest costs more
 * than its RAM), and a NUMA guest only shares with scenarios asking for the same node count.
 * The 6 GiB pages-folio-order18 needs makes each boot and kexec of its guest 1-3 s slower
 * (memmap): measured, still less than a guest of its own (~17 s).
 */
export const MERGED_MEMORY_MIB = 6144;

function shareKey(boot: GuestBoot): { kho: boolean; memoryMiB?: number; numaNodes?: number } {
  const big = boot.memoryMiB !== undefined && boot.memoryMiB > MERGED_MEMORY_MIB;
  const numa = boot.numaNodes && boot.numaNodes > 1 ? { numaNodes: boot.numaNodes } : {};
  return big ? { kho: boot.kho, memoryMiB: boot.memoryMiB, ...numa } : { kho: boot.kho, ...numa };
}

/** The guest a shareable scenario's run may share: the same arch, attempt and memory class. */
export function shareGroup(arch: string, attempt: number, boot: GuestBoot): string {
  return `${arch}|${attempt}|${JSON.stringify(shareKey(boot))}`;
}

/** One (arch, scenario, attempt) of the selection; `attempt` is 0-based. */
export interface ShardItem {
  readonly arch: ArchName;
  readonly scenario: Scenario;
  readonly attempt: number;
}

export interface ShardUnit {
  /** unitKey of its scenarios, with `#attempt` when the run repeats. */
  readonly key: string;
  readonly members: readonly ShardItem[];
  /** The estimate the split used. */
  readonly costMs: number;
  /** 1-based shard it went to. */
  readonly shard: number;
}

export interface ShardPlan {
  readonly spec: ShardSpec;
  /** Every unit of the selection, in suite order, each with its shard. */
  readonly units: readonly ShardUnit[];
  /** Where the durations came from (a path). */
  readonly durationsFrom: string;
}

/** A guest that boots, kexecs once and checks, under TCG on a loaded 2-core host. */
const UNTIMED_SCENARIO_MS = 10_000;

/** Whether a scenario may share a guest on some kernel (the kernel may still say no: canShare). */
export function mayShare(s: Scenario): boolean {
  return s.shareable === true && s.nextKernel === undefined;
}

/**
 * A unit's cost: the longest recorded unit made only of its scenarios, plus each scenario it
 * does not cover on its own (recorded alone, or a typical guest when never timed).
 */
export function estimateMs(arch: string, ids: readonly string[], durations: UnitDurations): number {
  const mine = new Set(ids);
  let best: { ms: number; covers: string[] } = { ms: 0, covers: [] };
  for (const [key, ms] of durations) {
    const [keyArch, list] = key.split(":", 2);
    if (keyArch !== arch || list === undefined) continue;
    const covers = list.split("+");
    if (covers.every((id) => mine.has(id)) && ms > best.ms) best = { ms, covers };
  }
  const rest = ids.filter((id) => !best.covers.includes(id));
  return best.ms + rest.reduce((a, id) => a + (durations.get(unitKey(arch, [id])) ?? UNTIMED_SCENARIO_MS), 0);
}

/** Every (arch, scenario, attempt) of a selection, attempt-major as the runner orders them. */
export function selectionItems(
  arches: readonly ArchName[],
  scenarios: readonly Scenario[],
  repeat: number,
): ShardItem[] {
  return Array.from({ length: repeat }, (_, attempt) =>
    arches.flatMap((arch) => scenarios.map((scenario) => ({ arch, scenario, attempt }))),
  ).flat();
}

/** Groups the selection into units and deals them to `spec.count` shards. */
export function planShards(
  items: readonly ShardItem[],
  opts: { readonly isolate: boolean; readonly repeat: number },
  spec: ShardSpec,
  durations: UnitDurations,
  durationsFrom: string,
): ShardPlan {
  const groups = new Map<string, ShardItem[]>();
  for (const item of items) {
    const g =
      !opts.isolate && mayShare(item.scenario)
        ? shareGroup(item.arch, item.attempt, item.scenario.boot)
        : `${item.arch}|${item.attempt}|alone:${item.scenario.id}`;
    groups.set(g, [...(groups.get(g) ?? []), item]);
  }
  const drafts = [...groups.values()].map((members) => {
    const head = members[0] as ShardItem;
    const ids = members.map((m) => m.scenario.id);
    const key = `${unitKey(head.arch, ids)}${opts.repeat > 1 ? `#${head.attempt + 1}` : ""}`;
    return { key, members, costMs: estimateMs(head.arch, ids, durations) };
  });
  const load = Array.from({ length: spec.count }, () => 0);
  const shardOf = new Map<string, number>();
  const byCost = [...drafts].sort((a, b) => b.costMs - a.costMs || (a.key < b.key ? -1 : 1));
  for (const d of byCost) {
    const least = load.indexOf(Math.min(...load));
    load[least] = (load[least] ?? 0) + d.costMs;
    shardOf.set(d.key, least + 1);
  }
  return {
    spec,
    units: drafts.map((d) => ({ ...d, shard: shardOf.get(d.key) ?? 1 })),
    durationsFrom,
  };
}

/** The units of this shard. */
export function shardUnits(plan: ShardPlan): ShardUnit[] {
  return plan.units.filter((u) => u.shard === plan.spec.index);
}

/** How many results this shard gives (its units' scenarios, each attempt). */
export function shardResults(plan: ShardPlan): number {
  return shardUnits(plan).reduce((n, u) => n + u.members.length, 0);
}

/** Whether this shard runs (arch, scenario, attempt). */
export function shardTakes(plan: ShardPlan, arch: string, scenarioId: string, attempt: number): boolean {
  return shardUnits(plan).some((u) =>
    u.members.some((m) => m.arch === arch && m.scenario.id === scenarioId && m.attempt === attempt),
  );
}

/** What report.json records of the shard, for `kho report merge`. */
export function shardRecord(plan: ShardPlan): ShardRecord {
  const all = plan.units.map((u) => u.key);
  return {
    index: plan.spec.index,
    count: plan.spec.count,
    selection: createHash("sha256").update(all.join("\n")).digest("hex").slice(0, 16),
    durations: plan.durationsFrom,
    units: shardUnits(plan).map((u) => u.key),
    allUnits: all,
    estimatedMs: shardUnits(plan).reduce((a, u) => a + u.costMs, 0),
  };
}

/** The lines a shard prints before it starts: what it took, and its estimated share. */
export function describeShard(plan: ShardPlan): string[] {
  const mine = shardUnits(plan);
  const total = plan.units.reduce((a, u) => a + u.costMs, 0);
  const est = mine.reduce((a, u) => a + u.costMs, 0);
  return [
    `# shard ${plan.spec.index}/${plan.spec.count}: ${mine.length} of ${plan.units.length} units, ${shardResults(plan)} results, estimated ${(est / 1000).toFixed(0)} s of ${(total / 1000).toFixed(0)} s (durations: ${plan.durationsFrom})`,
    ...mine.map((u) => `#   ${u.key} (${(u.costMs / 1000).toFixed(1)} s)`),
  ];
}
