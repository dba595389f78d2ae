// How long each unit of work (one scenario's guest, or a shared guest) took last time, kept in
// the cache, so the next run starts the longest first: with two guests at a time, a 25 s
// scenario started last leaves a core idle for most of it.
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { cacheRoot } from "../paths.js";
import { DURATIONS_FILE } from "../report/schema.js";
import { writeFileAtomic } from "../util/build-slot.js";

/** Unit key (`unitKey`) to its last wall time in ms. */
export type UnitDurations = ReadonlyMap<string, number>;

/** A guest that boots, kexecs once and checks, under TCG on a loaded 2-core host. */
const UNTIMED_GUEST_MS = 10_000;

const file = () => join(cacheRoot(), "unit-durations.json");

/** The unit's identity across runs: its arch and its scenarios (several for a shared guest). */
export function unitKey(arch: string, scenarioIds: readonly string[]): string {
  return `${arch}:${[...scenarioIds].sort().join("+")}`;
}

export async function loadUnitDurations(): Promise<UnitDurations> {
  try {
    const parsed: unknown = JSON.parse(await readFile(file(), "utf8"));
    if (typeof parsed !== "object" || parsed === null) return new Map();
    return new Map(
      Object.entries(parsed).filter((e): e is [string, number] => typeof e[1] === "number" && e[1] >= 0),
    );
  } catch {
    return new Map(); // first run, or a file a crash cut short: only the order suffers
  }
}

/**
 * Merges this run's durations over the remembered ones, and writes this run's own into its run
 * folder, where a CI keeps them to split the next night's shards with `--durations`.
 */
export async function saveUnitDurations(measured: UnitDurations, runDir?: string): Promise<void> {
  if (measured.size === 0) return;
  if (runDir)
    await writeFileAtomic(
      join(runDir, DURATIONS_FILE),
      `${JSON.stringify(Object.fromEntries(measured), null, 1)}\n`,
    );
  const merged = new Map([...(await loadUnitDurations()), ...measured]);
  await mkdir(dirname(file()), { recursive: true });
  await writeFileAtomic(file(), `${JSON.stringify(Object.fromEntries(merged), null, 1)}\n`);
}

/**
 * Longest first within each attempt (a flake hunt still sweeps the whole suite per attempt).
 * A unit never timed counts as the longest when it is shared (it holds several scenarios) and
 * as a typical one-kexec guest otherwise; ties keep the given order.
 */
export function longestFirst<
  T extends { readonly attempt: number; readonly key: string; readonly kind: string },
>(units: readonly T[], durations: UnitDurations): T[] {
  const estimate = (u: T) =>
    durations.get(u.key) ?? (u.kind === "shared" ? Number.MAX_SAFE_INTEGER : UNTIMED_GUEST_MS);
  return units
    .map((u, i) => ({ u, i, cost: estimate(u) }))
    .sort((a, b) => a.u.attempt - b.u.attempt || b.cost - a.cost || a.i - b.i)
    .map((x) => x.u);
}
