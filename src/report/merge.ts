// `kho report merge`: one run folder from the folders of a sharded run's jobs (`--shard K/N`),
// as if one machine had run the whole selection: report.json, the summary pages, JUnit, KTAP and
// the unit durations, with each shard's artifacts linked (or copied) under `shard-K/`.
//
// It refuses what cannot be one run, with one sentence: a folder that is not a shard, shards of
// different selections, the same shard twice, shards that booted different kernels for one arch,
// or shards that split the selection differently (a unit run twice). A unit that no given shard
// ran is reported, and counted, as a `notrun` result with the reason "missing".
import { cp, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { HarnessError } from "../errors.js";
import { KTAP_FILE, ktapOf } from "./ktap.js";
import {
  BAD_INPUT_EXIT,
  countVerdicts,
  DURATIONS_FILE,
  RUN_REPORT_SCHEMA,
  type ArchEntry,
  type LoadedReport,
  type MergedShard,
  type RunReportDoc,
} from "./schema.js";
import { writeSummaries } from "./summary.js";
import { exitCodeFor, type ScenarioResult, type SetupFailure, type ShardRecord } from "./verdict.js";
import { junitXml } from "./write.js";

const bad = (message: string) => new HarnessError(message, [], BAD_INPUT_EXIT);

interface Shard {
  readonly loaded: LoadedReport;
  readonly record: ShardRecord;
}

/** `arch:a+b#2` -> its arch, scenario ids and attempt (undefined when the run did not repeat). */
export function parseUnitKey(key: string): { arch: string; ids: string[]; attempt?: number } {
  const [unit = "", attempt] = key.split("#", 2);
  const colon = unit.indexOf(":");
  return {
    arch: unit.slice(0, colon),
    ids: unit.slice(colon + 1).split("+"),
    ...(attempt ? { attempt: Number(attempt) } : {}),
  };
}

/** The shards, checked to be parts of one run; one sentence for the first thing that is not. */
export function checkShards(loaded: readonly LoadedReport[]): Shard[] {
  if (loaded.length === 0) throw bad("merge takes the run folders of a sharded run's jobs: none given");
  const shards = loaded.map((l): Shard => {
    if (!l.doc.shard) throw bad(`${l.dir} is not a shard's run folder: it was not run with --shard K/N`);
    return { loaded: l, record: l.doc.shard };
  });
  const [first] = shards as [Shard, ...Shard[]];
  const seen = new Map<number, Shard>();
  for (const s of shards) {
    const r = s.record;
    if (r.selection !== first.record.selection || r.count !== first.record.count)
      throw bad(
        `${first.loaded.dir} and ${s.loaded.dir} are shards of different selections (${first.record.count} shards of ${first.record.allUnits.length} units, selection ${first.record.selection}; against ${r.count} of ${r.allUnits.length}, ${r.selection}): merge the shards of one run`,
      );
    const twin = seen.get(r.index);
    if (twin) throw bad(`${twin.loaded.dir} and ${s.loaded.dir} are both shard ${r.index}/${r.count}`);
    seen.set(r.index, s);
  }
  const kernels = new Map<string, { entry: ArchEntry; dir: string }>();
  for (const s of shards)
    for (const a of s.loaded.doc.arches) {
      const other = kernels.get(a.arch);
      const k = a.kernel;
      if (!other) kernels.set(a.arch, { entry: a, dir: s.loaded.dir });
      else if (
        other.entry.kernel.imageSha256 !== k.imageSha256 ||
        other.entry.kernel.configSha256 !== k.configSha256 ||
        other.entry.kernel.release !== k.release
      )
        throw bad(
          `${other.dir} and ${s.loaded.dir} booted different ${a.arch} kernels (${other.entry.kernel.release} ${short(other.entry.kernel.imageSha256)} against ${k.release} ${short(k.imageSha256)}): merge the shards of one kernel`,
        );
    }
  const ranBy = new Map<string, Shard>();
  for (const s of shards)
    for (const unit of s.record.units) {
      const twin = ranBy.get(unit);
      if (twin)
        throw bad(
          `${unit} ran in both ${twin.loaded.dir} (shard ${twin.record.index}) and ${s.loaded.dir} (shard ${s.record.index}): the shards split the selection differently; give every shard the same --durations file`,
        );
      ranBy.set(unit, s);
    }
  return shards;
}

const short = (sha: string | null) => (sha ? sha.slice(0, 12) : "(no hash)");

/** Units of the selection that no given shard ran. */
export function missingUnits(shards: readonly Shard[]): string[] {
  const ran = new Set(shards.flatMap((s) => s.record.units));
  return (shards[0]?.record.allUnits ?? []).filter((u) => !ran.has(u));
}

export interface MergeResult {
  readonly doc: RunReportDoc;
  readonly missing: readonly string[];
  readonly outDir: string;
  readonly html: string;
}

/**
 * The merged document, pure: results in the selection's order (its units' order, attempts
 * first), the missing units as `notrun`, setup failures of one arch and stage added up, each
 * result's artifacts at `artifactsOf`.
 */
export function mergeDocs(
  shards: readonly Shard[],
  artifactsOf: (shard: Shard, r: ScenarioResult) => string | undefined,
  startedFrom: string,
): { doc: RunReportDoc; missing: string[] } {
  const [first] = shards;
  if (!first) throw bad("merge takes at least one shard");
  const missing = missingUnits(shards);
  const given = shards.map((s) => `${s.record.index}/${s.record.count}`).join(", ");
  const missingResults = missing.flatMap((key) => {
    const u = parseUnitKey(key);
    return u.ids.map((id): ScenarioResult => ({
      id,
      arch: u.arch,
      ...(u.attempt ? { attempt: u.attempt } : {}),
      verdict: "notrun",
      reason: `missing: no merged shard ran unit ${key} (shards given: ${given})`,
      phaseMs: {},
      totalMs: 0,
    }));
  });
  const rank = new Map<string, number>();
  first.record.allUnits.forEach((key, i) => {
    const u = parseUnitKey(key);
    u.ids.forEach((id, j) => rank.set(resultKey(u.arch, id, u.attempt), i * 10_000 + j));
  });
  const results = [
    ...shards.flatMap((s) =>
      s.loaded.doc.results.map((r) => {
        const at = artifactsOf(s, r);
        const { artifactsDir: _, ...rest } = r;
        return at ? { ...rest, artifactsDir: at } : rest;
      }),
    ),
    ...missingResults,
  ].sort(
    (a, b) =>
      (a.attempt ?? 0) - (b.attempt ?? 0) ||
      (rank.get(resultKey(a.arch, a.id, a.attempt)) ?? 0) -
        (rank.get(resultKey(b.arch, b.id, b.attempt)) ?? 0),
  );
  const setupFailures = new Map<string, SetupFailure>();
  for (const f of shards.flatMap((s) => s.loaded.doc.setupFailures)) {
    const key = `${f.arch}\0${f.stage}\0${f.message}`;
    const had = setupFailures.get(key);
    setupFailures.set(key, had ? { ...had, notRun: had.notRun + f.notRun } : f);
  }
  const arches = new Map<string, ArchEntry>();
  for (const a of shards.flatMap((s) => s.loaded.doc.arches)) if (!arches.has(a.arch)) arches.set(a.arch, a);
  const starts = shards.map((s) => s.loaded.doc.startedAt).filter((t): t is string => t !== null);
  const mergedFrom = shards.map((s): MergedShard => ({
    dir: resolve(s.loaded.dir),
    shard: `${s.record.index}/${s.record.count}`,
    wallMs: s.loaded.doc.wallMs,
    hostname: s.loaded.doc.host.hostname,
  }));
  return {
    missing,
    doc: {
      schema: RUN_REPORT_SCHEMA,
      startedAt: starts.sort()[0] ?? null,
      startedFrom,
      // The jobs ran side by side: the run took as long as its slowest shard.
      wallMs: Math.max(...shards.map((s) => s.loaded.doc.wallMs)),
      exitCode: exitCodeFor(results),
      totals: countVerdicts(results),
      host: first.loaded.doc.host,
      arches: [...arches.values()],
      setupFailures: [...setupFailures.values()],
      results,
      mergedFrom,
    },
  };
}

const resultKey = (arch: string, id: string, attempt: number | undefined) =>
  `${arch}\0${id}\0${attempt ?? 0}`;

/**
 * Where a result's artifacts were, relative to its shard's run folder. The report holds the path
 * on the machine that ran the shard; the folder may since have moved (a CI artifact download),
 * so the part after the run folder is found from the `/<arch>/` the runner puts there.
 */
export function artifactsRelative(r: ScenarioResult, shardDir: string): string | undefined {
  if (!r.artifactsDir) return undefined;
  const inside = resolve(shardDir) + sep;
  if (r.artifactsDir.startsWith(inside)) return r.artifactsDir.slice(inside.length);
  const at = r.artifactsDir.lastIndexOf(`${sep}${r.arch}${sep}`);
  return at >= 0 ? r.artifactsDir.slice(at + 1) : undefined;
}

/** Merges shard run folders into `outDir` (linking their artifacts, or copying with `copy`). */
export async function mergeRunFolders(
  loaded: readonly LoadedReport[],
  outDir: string,
  opts: { readonly copy?: boolean; readonly startedFrom: string },
): Promise<MergeResult> {
  const shards = checkShards(loaded);
  const out = resolve(outDir);
  if (shards.some((s) => resolve(s.loaded.dir) === out))
    throw bad(`--out ${outDir} is one of the shard folders: give a new folder`);
  await mkdir(out, { recursive: true });
  const shardDir = (s: Shard) => `shard-${s.record.index}`;
  for (const s of shards) {
    const to = join(out, shardDir(s));
    await rm(to, { recursive: true, force: true });
    if (opts.copy) await cp(resolve(s.loaded.dir), to, { recursive: true });
    else await symlink(resolve(s.loaded.dir), to, "dir");
  }
  const { doc, missing } = mergeDocs(
    shards,
    (s, r) => {
      const rel = artifactsRelative(r, s.loaded.dir);
      return rel === undefined ? undefined : join(out, shardDir(s), rel);
    },
    opts.startedFrom,
  );
  await writeFile(join(out, "report.json"), `${JSON.stringify(doc, null, 2)}\n`);
  await writeFile(join(out, "junit.xml"), junitXml(doc));
  await writeFile(
    join(out, KTAP_FILE),
    ktapOf(doc.results, doc.setupFailures, [
      `merged from ${shards.length} of ${shards[0]?.record.count ?? 0} shards: ${doc.mergedFrom?.map((m) => `${m.shard} ${m.dir}`).join(", ") ?? ""}`,
      ...(missing.length ? [`missing units (no shard ran them): ${missing.join(", ")}`] : []),
    ]),
  );
  // The shards' measured durations together: the next night's --durations.
  const durations: Record<string, number> = {};
  for (const s of shards) {
    const text = await readFile(join(s.loaded.dir, DURATIONS_FILE), "utf8").catch(() => "{}");
    try {
      Object.assign(durations, JSON.parse(text) as Record<string, number>);
    } catch {
      // a shard cut short by a crash: its durations are only a balancing hint
    }
  }
  await writeFile(join(out, DURATIONS_FILE), `${JSON.stringify(durations, null, 1)}\n`);
  const written = await writeSummaries(out, doc);
  return { doc, missing, outDir: out, html: written.html };
}
