// A setup shared by every scenario of an arch that fails (here: the kernel image is not a
// kernel, so the inspect step refuses it) is reported once with its evidence, and the scenarios
// it stops are "not run" because of it, in KTAP, the JSON report and JUnit. The real runner is
// driven; no guest boots because the setup fails before any.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseReport, unknownHost } from "../../src/report/schema.js";
import { KtapWriter } from "../../src/report/ktap.js";
import { buildRunDocument, junitXml, summaryTable } from "../../src/report/write.js";
import { runScenarios, type RunReport } from "../../src/orchestrate/runner.js";
import { exitCodeFor } from "../../src/report/verdict.js";
import { SCENARIOS } from "../../src/scenarios/index.js";

const picked = SCENARIOS.slice(0, 3);
let dir: string;
let report: RunReport;
const ktap: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kho-setup-"));
  const bogus = join(dir, "bzImage");
  await writeFile(bogus, "this is not a kernel\n");
  const writer = new KtapWriter((l) => ktap.push(l), picked.length);
  report = await runScenarios({
    arches: ["x86_64"],
    scenarios: picked,
    kernel: bogus,
    outDir: join(dir, "out"),
    log: () => undefined,
    onResult: (r) => writer.result(r),
    onSetupFailure: (f) => writer.setupFailure(f),
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("a failed arch setup", () => {
  it("is one failure with its stage and evidence, and every scenario is not run because of it", () => {
    expect(report.setupFailures).toHaveLength(1);
    const [f] = report.setupFailures;
    expect(f?.arch).toBe("x86_64");
    expect(f?.stage).toBe("inspect");
    expect(f?.notRun).toBe(picked.length);
    expect(f?.message).toMatch(/bzImage/);
    expect(report.results.map((r) => [r.id, r.verdict])).toEqual(picked.map((s) => [s.id, "notrun"]));
    for (const r of report.results)
      expect(r.notRunBecause).toEqual({ setupArch: "x86_64", stage: "inspect" });
    expect(exitCodeFor(report.results)).toBe(1);
  });

  it("KTAP: the error once, then a NOTRUN line per scenario that does not repeat it", () => {
    const message = report.setupFailures[0]?.message ?? "?";
    expect(ktap.filter((l) => l.includes(message))).toHaveLength(1);
    expect(ktap.find((l) => l.startsWith("# setup x86_64 (inspect) failed:"))).toBeDefined();
    const lines = ktap.filter((l) => /^(not )?ok /.test(l));
    expect(lines).toEqual(
      picked.map(
        (s, i) => `not ok ${i + 1} ${s.id}.x86_64 # NOTRUN not run: the x86_64 setup (inspect) failed`,
      ),
    );
  });

  it("JSON: the failure once in setupFailures, results notrun, and it reads back", async () => {
    const doc = await buildRunDocument(report, {
      wallMs: 1,
      argv: ["kho", "run"],
      host: () => Promise.resolve(unknownHost("h")),
    });
    expect(doc.totals.notrun).toBe(picked.length);
    expect(doc.exitCode).toBe(1);
    const back = parseReport(JSON.parse(JSON.stringify(doc))).doc;
    expect(back.setupFailures).toEqual(report.setupFailures);
    expect(back.results.every((r) => r.verdict === "notrun" && r.notRunBecause?.stage === "inspect")).toBe(
      true,
    );
  });

  it("JUnit: one setup testcase with the error, the scenarios skipped naming it", () => {
    const x = junitXml(report);
    expect(x.match(/<error /g)).toHaveLength(1);
    expect(x).toContain('<testcase classname="kho.x86_64" name="setup (inspect)"');
    expect(x.match(/<skipped message="not run: the x86_64 setup \(inspect\) failed"\/>/g)).toHaveLength(
      picked.length,
    );
    expect(x).toContain(`tests="${picked.length + 1}" failures="0" errors="1" skipped="${picked.length}"`);
  });

  it("the summary table: one ERROR row for the setup, NOTRUN rows", () => {
    const t = summaryTable(report).split("\n");
    expect(t.filter((l) => /\bERROR\b/.test(l))).toHaveLength(1);
    expect(t.filter((l) => /\bNOTRUN\b/.test(l))).toHaveLength(picked.length);
  });
});
