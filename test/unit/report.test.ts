import { describe, expect, it } from "vitest";
import { KtapWriter } from "../../src/report/ktap.js";
import { junitXml, summaryTable } from "../../src/report/write.js";
import { exitCodeFor, type ScenarioResult } from "../../src/report/verdict.js";

const r = (id: string, verdict: ScenarioResult["verdict"], reason?: string): ScenarioResult => ({
  id,
  arch: "x86_64",
  verdict,
  ...(reason ? { reason } : {}),
  evidence: verdict === "fail" ? ["Kernel panic - not syncing: <oops>"] : [],
  phaseMs: { boot: 1200 },
  totalMs: 2500,
});

describe("verdicts and exit codes (kselftest)", () => {
  it("0 when everything passed or failed as expected, 1 on a failure or an unexpected pass, 4 for only skips", () => {
    expect(exitCodeFor([r("a", "pass"), r("b", "xfail", "known bug"), r("c", "skip", "no hugetlb")])).toBe(0);
    expect(exitCodeFor([r("a", "pass"), r("b", "fail", "bad")])).toBe(1);
    expect(exitCodeFor([r("a", "xpass")])).toBe(1);
    expect(exitCodeFor([r("a", "error", "qemu")])).toBe(1);
    expect(exitCodeFor([r("a", "skip", "x"), r("b", "skip", "y")])).toBe(4);
  });
});

describe("KTAP", () => {
  it("numbers results, marks skips and xfails as ok with directives, prints evidence before a failure", () => {
    const lines: string[] = [];
    const k = new KtapWriter((l) => lines.push(l), 4);
    for (const x of [
      r("a", "pass"),
      r("b", "skip", "kernel lacks CONFIG_X"),
      r("c", "xfail", "tails refcount 1"),
      r("d", "fail", "sha differs"),
    ]) {
      k.result(x);
    }
    expect(lines).toEqual([
      "KTAP version 1",
      "1..4",
      "ok 1 a.x86_64",
      "ok 2 b.x86_64 # SKIP kernel lacks CONFIG_X",
      "ok 3 c.x86_64 # XFAIL tails refcount 1",
      "# Kernel panic - not syncing: <oops>",
      "# d.x86_64: sha differs",
      "not ok 4 d.x86_64",
    ]);
  });
});

describe("reports", () => {
  it("JUnit escapes text and counts per verdict", () => {
    const x = junitXml({
      results: [r("a", "pass"), r("b<&>", "fail", 'said "no"'), r("c", "skip", "why")],
      setupFailures: [],
    });
    expect(x).toContain(
      '<testsuite name="kho.x86_64" tests="3" failures="1" errors="0" skipped="1" time="7.500">',
    );
    expect(x).toContain('name="b&lt;&amp;&gt;"');
    expect(x).toContain(
      '<failure message="said &quot;no&quot;">Kernel panic - not syncing: &lt;oops&gt;</failure>',
    );
  });

  it("the summary table has a row per result", () => {
    const t = summaryTable({
      results: [r("test-kho", "pass"), r("memfd-basic", "fail", "sha differs")],
      setups: [],
      setupFailures: [],
    });
    expect(t.split("\n")).toHaveLength(3);
    expect(t).toMatch(/memfd-basic\s+x86_64\s+FAIL\s+2\.5s\s+sha differs/);
  });
});
