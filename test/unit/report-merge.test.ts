import { mkdir, mkdtemp, readFile, readlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkShards, mergeDocs, mergeRunFolders, parseUnitKey } from "../../src/report/merge.js";
import {
  loadReport,
  unknownHost,
  type ArchEntry,
  type LoadedReport,
  type ReportResult,
  type RunReportDoc,
} from "../../src/report/schema.js";
import type { ShardRecord, Verdict } from "../../src/report/verdict.js";

const ALL = ["x86_64:a+b", "x86_64:c", "arm64:a+b", "arm64:c"];

const result = (id: string, arch: string, verdict: Verdict, artifactsDir?: string): ReportResult => ({
  id,
  arch,
  verdict,
  phaseMs: { boot: 1000 },
  totalMs: 2000,
  ...(artifactsDir ? { artifactsDir } : {}),
});

const arch = (name: "x86_64" | "arm64", sha = "aa"): ArchEntry => ({
  arch: name,
  accel: "tcg",
  accelReason: null,
  qemu: { binary: "qemu", version: "10.0.2", banner: null },
  kernel: {
    image: "/k",
    imageSha256: sha,
    release: "7.2.13",
    next: "/k",
    configSha256: "cc",
    configOptions: 1,
    source: null,
    buildKey: null,
  },
  phaseMs: {},
});

function shardDoc(
  index: number,
  units: string[],
  results: ReportResult[],
  more: Partial<ShardRecord> = {},
  arches: ArchEntry[] = [arch("x86_64"), arch("arm64")],
): RunReportDoc {
  return {
    schema: "kho-harness/run-report@2",
    startedAt: `2026-12-06T07:0${index}:00.000Z`,
    startedFrom: `kho run --shard ${index}/2`,
    wallMs: index * 60_000,
    exitCode: 0,
    totals: { pass: 0, fail: 0, xfail: 0, xpass: 0, skip: 0, error: 0, notrun: 0 },
    host: unknownHost(`job-${index}`),
    arches,
    setupFailures: [],
    results,
    shard: {
      index,
      count: 2,
      selection: "sel1",
      durations: "ci/unit-durations.json",
      units,
      allUnits: ALL,
      estimatedMs: 1,
      ...more,
    },
  };
}

const loaded = (doc: RunReportDoc, dir: string): LoadedReport => ({
  doc,
  dir,
  path: join(dir, "report.json"),
});

const shard1 = () =>
  shardDoc(
    1,
    ["x86_64:a+b", "arm64:c"],
    [result("a", "x86_64", "pass"), result("b", "x86_64", "fail"), result("c", "arm64", "pass")],
  );
const shard2 = () =>
  shardDoc(
    2,
    ["x86_64:c", "arm64:a+b"],
    [result("c", "x86_64", "pass"), result("a", "arm64", "pass"), result("b", "arm64", "skip")],
  );

describe("kho report merge", () => {
  it("parses unit keys, with the attempt of a repeated run", () => {
    expect(parseUnitKey("arm64:a+b#3")).toEqual({ arch: "arm64", ids: ["a", "b"], attempt: 3 });
    expect(parseUnitKey("x86_64:selftest-luo_kexec_simple")).toEqual({
      arch: "x86_64",
      ids: ["selftest-luo_kexec_simple"],
    });
  });

  it("puts the shards back together: every result once, in the selection's order, wall time of the slowest", () => {
    const { doc, missing } = mergeDocs(
      checkShards([loaded(shard2(), "/s2"), loaded(shard1(), "/s1")]),
      () => undefined,
      "kho report merge",
    );
    expect(missing).toEqual([]);
    expect(doc.results.map((r) => `${r.id}.${r.arch}:${r.verdict}`)).toEqual([
      "a.x86_64:pass",
      "b.x86_64:fail",
      "c.x86_64:pass",
      "a.arm64:pass",
      "b.arm64:skip",
      "c.arm64:pass",
    ]);
    expect(doc.totals).toMatchObject({ pass: 4, fail: 1, skip: 1 });
    expect(doc.exitCode).toBe(1);
    expect(doc.wallMs).toBe(120_000);
    expect(doc.startedAt).toBe("2026-12-06T07:01:00.000Z");
    expect(doc.shard).toBeUndefined();
    expect(doc.mergedFrom?.map((m) => m.shard)).toEqual(["2/2", "1/2"]);
  });

  it("reports a unit no given shard ran as missing, counted as notrun", () => {
    const { doc, missing } = mergeDocs(checkShards([loaded(shard1(), "/s1")]), () => undefined, "m");
    expect(missing).toEqual(["x86_64:c", "arm64:a+b"]);
    const notrun = doc.results.filter((r) => r.verdict === "notrun");
    expect(notrun.map((r) => `${r.id}.${r.arch}`)).toEqual(["c.x86_64", "a.arm64", "b.arm64"]);
    expect(notrun[0]?.reason).toBe("missing: no merged shard ran unit x86_64:c (shards given: 1/2)");
    expect(doc.totals.notrun).toBe(3);
  });

  it("refuses what cannot be one run, in one sentence", () => {
    const refuse = (docs: [RunReportDoc, string][]) => () =>
      checkShards(docs.map(([d, dir]) => loaded(d, dir)));
    const { shard: _, ...unsharded } = shard1();
    expect(refuse([[unsharded as RunReportDoc, "/plain"]])).toThrow(
      "/plain is not a shard's run folder: it was not run with --shard K/N",
    );
    expect(
      refuse([
        [shard1(), "/s1"],
        [{ ...shard2(), shard: { ...shard2().shard!, selection: "other" } }, "/s2"],
      ]),
    ).toThrow(/^\/s1 and \/s2 are shards of different selections/);
    expect(
      refuse([
        [shard1(), "/s1"],
        [shard1(), "/s1b"],
      ]),
    ).toThrow("/s1 and /s1b are both shard 1/2");
    expect(
      refuse([
        [shard1(), "/s1"],
        [shardDoc(2, ["x86_64:c"], [], {}, [arch("x86_64", "bb")]), "/s2"],
      ]),
    ).toThrow(/^\/s1 and \/s2 booted different x86_64 kernels \(7\.2\.13 aa against 7\.2\.13 bb\)/);
    expect(
      refuse([
        [shard1(), "/s1"],
        [shardDoc(2, ["arm64:c", "x86_64:c"], []), "/s2"],
      ]),
    ).toThrow(
      "arm64:c ran in both /s1 (shard 1) and /s2 (shard 2): the shards split the selection differently; give every shard the same --durations file",
    );
    expect(() => checkShards([])).toThrow(/none given/);
  });

  it("writes a run folder: report.json that loads, JUnit, KTAP, summaries, artifacts linked", async () => {
    const root = await mkdtemp(join(tmpdir(), "kho-merge-"));
    // a shard folder that moved since it ran (a CI artifact download): its paths name another place
    const dirs = [join(root, "job-1"), join(root, "job-2")];
    const docs = [shard1(), shard2()].map((d, i) => ({
      ...d,
      results: d.results.map((r) => ({ ...r, artifactsDir: `/ci/build/out/${r.arch}/${r.id}` })),
      ...(i === 0 ? {} : {}),
    }));
    for (const [i, dir] of dirs.entries()) {
      await mkdir(join(dir, "x86_64", "a"), { recursive: true });
      await writeFile(join(dir, "report.json"), JSON.stringify(docs[i]));
      await writeFile(join(dir, "unit-durations.json"), JSON.stringify({ [`x86_64:u${i}`]: i + 1 }));
    }
    const out = join(root, "merged");
    const merged = await mergeRunFolders(await Promise.all(dirs.map(loadReport)), out, { startedFrom: "m" });
    const back = await loadReport(out);
    expect(back.doc.results).toHaveLength(6);
    expect(back.doc.results[0]?.artifactsDir).toBe(join(out, "shard-1", "x86_64", "a"));
    expect(await readlink(join(out, "shard-1"))).toBe(dirs[0]);
    const ktap = await readFile(join(out, "results.ktap"), "utf8");
    expect(ktap).toMatch(/^KTAP version 1\n1\.\.6\n# merged from 2 of 2 shards/);
    expect(ktap).toContain("not ok 2 b.x86_64");
    expect(await readFile(join(out, "junit.xml"), "utf8")).toContain('<testsuite name="kho.arm64" tests="3"');
    expect(JSON.parse(await readFile(join(out, "unit-durations.json"), "utf8"))).toEqual({
      "x86_64:u0": 1,
      "x86_64:u1": 2,
    });
    expect(merged.html).toBe(join(out, "summary.html"));
    await expect(
      mergeRunFolders([await loadReport(dirs[0] ?? "")], dirs[0] ?? "", { startedFrom: "m" }),
    ).rejects.toThrow(/is one of the shard folders/);
  });
});
