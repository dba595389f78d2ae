import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import {
  compareReports,
  comparisonExitCode,
  formatComparison,
  isFlagged,
  type Comparison,
} from "../../src/report/compare.js";
import {
  loadReport,
  type ArchEntry,
  type ReportResult,
  type RunReportDoc,
  unknownHost,
} from "../../src/report/schema.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "reports");
const load = async (name: string) => (await loadReport(join(FIXTURES, name))).doc;
const names = (xs: readonly { name: string }[]) => xs.map((x) => x.name);
const labels = { old: "OLD", new: "NEW" };

function docOf(results: ReportResult[], arches: ArchEntry[] = []): RunReportDoc {
  return {
    schema: "kho-harness/run-report@2",
    startedAt: null,
    startedFrom: "kho run",
    wallMs: 0,
    exitCode: 0,
    totals: { pass: 0, fail: 0, xfail: 0, xpass: 0, skip: 0, error: 0, notrun: 0 },
    setupFailures: [],
    host: unknownHost("h"),
    arches,
    results,
  };
}

const result = (
  id: string,
  verdict: ReportResult["verdict"],
  phaseMs: Record<string, number> = {},
  attempt?: number,
): ReportResult => ({
  id,
  arch: "x86_64",
  verdict,
  ...(attempt ? { attempt } : {}),
  ...(verdict === "pass" ? {} : { reason: `${id} ${verdict}` }),
  phaseMs,
  totalMs: Object.values(phaseMs).reduce((a, b) => a + b, 0),
});

describe("kho report --compare (real reports)", () => {
  it("finds the hand-made regression: a new failure, added and removed scenarios, a slower kexec", async () => {
    const c = compareReports(await load("x86_64-pages"), await load("x86_64-pages-regressed"));
    expect(c.newFailures).toEqual([
      {
        name: "pages-folio-order9.x86_64",
        old: expect.objectContaining({ verdict: "PASS", failing: false }) as unknown,
        new: {
          verdict: "FAIL",
          failing: true,
          reason: 'folio order 9: tails {"0":510} <expected 511> & head_ref 2',
        },
      },
    ]);
    expect(c.fixed).toEqual([]);
    expect(c.verdictChanges).toEqual([]);
    expect(names(c.added)).toEqual(["memfd-basic.x86_64"]);
    expect(names(c.removed)).toEqual(["pages-folio-order0.x86_64"]);
    expect(c.setup).toEqual([]);
    // Timings of the two scenarios whose verdict held: 5 phases + total each.
    expect(c.timings).toHaveLength(12);
    expect(c.timings.filter((t) => t.flagged).map((t) => [t.name, t.phase, t.oldMs, t.newMs])).toEqual([
      ["pages-split-order9.x86_64", "kexec", 5935, 9135],
      ["pages-split-order9.x86_64", "total", 11633, 14833],
    ]);
    expect(comparisonExitCode(c)).toBe(1);
    const text = formatComparison(c, labels);
    expect(text).toContain(
      'new failures (1):\n  pages-folio-order9.x86_64: PASS -> FAIL: folio order 9: tails {"0":510} <expected 511> & head_ref 2\n',
    );
    expect(text).toContain("fixed: none\nother verdict changes: none\n");
    expect(text).toContain(
      "added (1):\n  memfd-basic.x86_64: PASS\nremoved (1):\n  pages-folio-order0.x86_64: PASS\n",
    );
    expect(text).toContain("timing changes over 20% and 1 s: 2 of 12 compared:\n");
    expect(text).toMatch(/! pages-split-order9\.x86_64 {2}kexec +5\.9 s -> +9\.1 s +\+3\.2 s +\(\+54%\)/);
    expect(text.trimEnd().split("\n").at(-1)).toBe("1 new failure");
  });

  it("the other way round the failure is fixed, with the reason it had, and the exit code is 0", async () => {
    const c = compareReports(await load("x86_64-pages-regressed"), await load("x86_64-pages"));
    expect(c.newFailures).toEqual([]);
    expect(names(c.fixed)).toEqual(["pages-folio-order9.x86_64"]);
    expect(comparisonExitCode(c)).toBe(0);
    const text = formatComparison(c, labels, true);
    expect(text).toContain("pages-folio-order9.x86_64: FAIL -> PASS: was: folio order 9");
    // --all lists every compared timing, the flagged ones marked.
    expect(text).toMatch(/^ {4}pages-dma-order9\.x86_64 {4}boot/m);
    expect(text).toMatch(/^ {2}! pages-split-order9\.x86_64 {2}kexec/m);
    expect(text.trimEnd().split("\n").at(-1)).toBe("no new failures");
  });

  it("a run against itself changes nothing", async () => {
    const doc = await load("x86_64-mixed");
    const c = compareReports(doc, doc);
    expect([c.newFailures, c.fixed, c.verdictChanges, c.added, c.removed, c.setup]).toEqual([
      [],
      [],
      [],
      [],
      [],
      [],
    ]);
    expect(c.timings.every((t) => !t.flagged && t.ratio === 0)).toBe(true);
    expect(comparisonExitCode(c)).toBe(0);
  });

  it("a failing scenario that OLD did not have is a new failure too", async () => {
    const c = compareReports(await load("x86_64-pages"), await load("x86_64-mixed"));
    expect(names(c.newFailures)).toEqual(["chain-memfd.x86_64"]);
    expect(c.newFailures[0]?.old).toBeUndefined();
    expect(names(c.added)).toEqual(["pages-folio-order18.x86_64", "chain-memfd.x86_64"]);
    expect(c.removed).toHaveLength(4);
    expect(formatComparison(c, labels)).toContain(
      "chain-memfd.x86_64: (not in OLD) -> FAIL: the guest kernel oopsed",
    );
  });
});

describe("comparison rules", () => {
  it("flags a phase that moved by more than 20% and more than 1 s", () => {
    expect(isFlagged(4000, 5100)).toBe(true); // +27.5%, +1.1 s
    expect(isFlagged(5100, 4000)).toBe(true); // faster counts too
    expect(isFlagged(1000, 1900)).toBe(false); // +90% but 0.9 s
    expect(isFlagged(10_000, 11_500)).toBe(false); // 1.5 s but +15%
  });

  it("other verdict changes, and timings only where the verdict held", () => {
    const c = compareReports(
      docOf([result("a", "pass", { boot: 4000 }), result("b", "xfail", { boot: 4000 })]),
      docOf([result("a", "skip", { boot: 9000 }), result("b", "xfail", { boot: 9000 })]),
    );
    expect(c.verdictChanges).toEqual([
      {
        name: "a.x86_64",
        old: { verdict: "PASS", failing: false },
        new: { verdict: "SKIP", failing: false, reason: "a skip" },
      },
    ]);
    expect(c.timings.map((t) => [t.name, t.phase, t.flagged])).toEqual([
      ["b.x86_64", "boot", true],
      ["b.x86_64", "total", true],
    ]);
    expect(comparisonExitCode(c)).toBe(0);
  });

  it("repeated runs of a scenario count together: one failing run of three is a failure", () => {
    const before = docOf([1, 2, 3].map((n) => result("a", "pass", { kexec: 6000 }, n)));
    const after = docOf([
      result("a", "pass", { kexec: 6000 }, 1),
      result("a", "fail", { kexec: 6500 }, 2),
      result("a", "pass", { kexec: 9000 }, 3),
    ]);
    const c = compareReports(before, after);
    expect(c.newFailures).toEqual([
      {
        name: "a.x86_64",
        old: { verdict: "PASS", failing: false },
        new: { verdict: "PASS×2/FAIL×1", failing: true, reason: "a fail" },
      },
    ]);
    expect(comparisonExitCode(c)).toBe(1);
    // Same runs, the other way: fixed.
    expect(names(compareReports(after, before).fixed)).toEqual(["a.x86_64"]);
  });

  it("reports setup changes per arch, ignoring facts an older report did not record", () => {
    const arch = (accel: "kvm" | "tcg", qemu: string | null, config: string | null): ArchEntry => ({
      arch: "x86_64",
      accel,
      accelReason: null,
      qemu: { binary: "qemu-system-x86_64", version: qemu, banner: null },
      kernel: {
        image: "/k",
        imageSha256: null,
        release: "7.2.13",
        next: "/k",
        configSha256: config,
        configOptions: null,
        source: null,
        buildKey: null,
      },
      phaseMs: {},
    });
    const c: Comparison = compareReports(
      docOf([], [arch("tcg", "9.2.0", null)]),
      docOf([], [arch("kvm", "10.0.2", "ab".repeat(32))]),
    );
    expect(c.setup).toEqual([
      { arch: "x86_64", what: "accelerator", old: "tcg", new: "kvm" },
      { arch: "x86_64", what: "QEMU", old: "9.2.0", new: "10.0.2" },
    ]);
    expect(formatComparison(c, labels)).toContain("setup changes (2):\n  x86_64 accelerator: tcg -> kvm\n");
  });
});

describe("kho report --compare (CLI)", { timeout: 60_000 }, () => {
  const kho = (...args: string[]) => execa("node", ["bin/kho", "report", ...args], { reject: false });

  it("exits 1 on new failures and 0 otherwise, for folders and report.json paths", async () => {
    const regressed = await kho(
      "--compare",
      join(FIXTURES, "x86_64-pages"),
      join(FIXTURES, "x86_64-pages-regressed"),
    );
    expect(regressed.exitCode, regressed.stderr).toBe(1);
    expect(regressed.stdout).toContain("new failures (1):");
    const fixed = await kho(
      "--compare",
      join(FIXTURES, "x86_64-pages-regressed", "report.json"),
      join(FIXTURES, "x86_64-pages", "report.json"),
    );
    expect(fixed.exitCode, fixed.stderr).toBe(0);
    expect(fixed.stdout).toContain("fixed (1):");
  });

  it("--json gives the comparison as an object", async () => {
    const r = await kho(
      "--compare",
      "--json",
      join(FIXTURES, "x86_64-pages"),
      join(FIXTURES, "x86_64-pages-regressed"),
    );
    expect(r.exitCode).toBe(1);
    const json = JSON.parse(r.stdout) as Comparison & { old: string; new: string };
    expect(json.new).toBe(join(FIXTURES, "x86_64-pages-regressed", "report.json"));
    expect(json.newFailures.map((f) => f.name)).toEqual(["pages-folio-order9.x86_64"]);
  });

  it("bad input is one sentence and exit code 2, not a stack trace", async () => {
    const cases = [
      [["--compare", join(FIXTURES, "x86_64-pages")], /--compare takes two runs, OLD and NEW, got 1/],
      [["--compare", join(FIXTURES, "nope"), join(FIXTURES, "x86_64-pages")], /nope does not exist/],
      [
        ["--compare", "package.json", join(FIXTURES, "x86_64-pages")],
        /package\.json is not a kho run report/,
      ],
    ] as const;
    const runs = await Promise.all(cases.map(([args]) => kho(...args)));
    for (const [i, [, message]] of cases.entries()) {
      const r = runs[i];
      if (!r) throw new Error("missing run");
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
    }
  });
});
