import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { configSha256, parseQemuVersion } from "../../src/report/collect.js";
import { artifactsLink, escapeMarkdownCell, escapeXml, runTime } from "../../src/report/format.js";
import {
  loadReport,
  parseReport,
  RUN_REPORT_SCHEMA,
  type RunReportDoc,
  unknownHost,
} from "../../src/report/schema.js";
import { renderHtml, renderMarkdown, timingRows } from "../../src/report/summary.js";
import { niceStep, phaseLegend, timingChart } from "../../src/report/svg.js";
import { buildRunDocument } from "../../src/report/write.js";
import type { RunReport } from "../../src/orchestrate/runner.js";
import type { Fact } from "../../src/api/facts.js";
import type { CheckRecord } from "../../src/api/findings.js";
import { refusal, assertBalancedXml } from "./helpers/report-asserts.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "reports");
const fixture = (name: string) => loadReport(join(FIXTURES, name));
const SPECIAL = 'tails {"0":510} <expected 511> & head_ref 2';

const tmpDirs: string[] = [];
afterAll(async () => {
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
});

describe("report.json reader", () => {
  it("reads a real @1 report and upgrades it, with the facts it lacks as unknown", async () => {
    const r = await fixture("x86_64-pages");
    expect(r.upgradedFrom).toBe("kho-harness/run-report@1");
    expect(r.doc.schema).toBe(RUN_REPORT_SCHEMA);
    expect(r.doc.totals).toEqual({ pass: 3, fail: 0, xfail: 1, xpass: 0, skip: 0, error: 0, notrun: 0 });
    expect(r.doc.host.hostname).toBe("vm");
    expect(r.doc.host.os).toBeNull();
    const [x86] = r.doc.arches;
    expect(x86?.accel).toBe("tcg");
    expect(x86?.kernel.release).toBe("7.2.13");
    expect(x86?.qemu.version).toBeNull();
    expect(x86?.kernel.configSha256).toBeNull();
    expect(r.doc.results.map((x) => x.phaseMs.kexec)).toEqual([6725, 5891, 5935, 5729]);
  });

  it("refuses what is not a report, or another schema version, in one sentence", () => {
    expect(() => parseReport({ name: "kho-harness" }, "package.json")).toThrow(
      'package.json is not a kho run report (no "schema" field)',
    );
    expect(() => parseReport({ schema: "kho-harness/run-report@9" }, "r.json")).toThrow(
      /^r\.json has schema kho-harness\/run-report@9, which this harness cannot read \(it reads kho-harness\/run-report@1, kho-harness\/run-report@2\)/,
    );
    expect(() => parseReport({ schema: "junit" }, "r.json")).toThrow(
      'r.json is not a kho run report (schema "junit")',
    );
    /** A minimal @1 report with one result, `extra` merged into that result. */
    const oneResult = (extra: Record<string, unknown>) => ({
      schema: "kho-harness/run-report@1",
      host: "h",
      startedFrom: "kho run",
      wallMs: 1,
      exitCode: 0,
      arches: [],
      results: [{ id: "a", arch: "x86_64", verdict: "pass", phaseMs: {}, totalMs: 1, ...extra }],
    });
    expect(() => parseReport(oneResult({ verdict: "maybe" }), "r.json")).toThrow(
      'r.json is not a valid kho run report: results[0].verdict should be pass|fail|xfail|xpass|skip|error|notrun, got "maybe"',
    );
    const withBoots = (boots: unknown) => oneResult({ boots });
    expect(() =>
      parseReport(withBoots([{ boot: 1, via: "reboot", totalMs: 1, segments: [] }]), "r.json"),
    ).toThrow(
      'r.json is not a valid kho run report: results[0].boots[0].via should be boot|kexec, got "reboot"',
    );
    expect(() =>
      parseReport(
        withBoots([{ boot: 1, via: "boot", totalMs: 1, segments: [{ name: "kernel" }] }]),
        "r.json",
      ),
    ).toThrow(/results\[0\]\.boots\[0\]\.segments\[0\]\.ms should be/);
  });

  /** A minimal @2 report with one result, `extra` merged into that result. */
  const v2 = (extra: Record<string, unknown>, top: Record<string, unknown> = {}) => ({
    schema: RUN_REPORT_SCHEMA,
    startedAt: null,
    startedFrom: "kho run",
    wallMs: 1,
    exitCode: 0,
    host: unknownHost("h"),
    arches: [],
    setupFailures: [],
    results: [{ id: "a", arch: "x86_64", verdict: "pass", phaseMs: {}, totalMs: 1, ...extra }],
    ...top,
  });
  const facts: Fact[] = [
    { kind: "memfds-restored", memfds: 2, sessions: 1, bytes: 8192, frames: 2 },
    { kind: "boot", boot: 2, release: "7.2.13", execFrom: "KHO: exec from 7.2.13", execCount: 1 },
    { kind: "folios", memfd: "m0", orders: { "0": 3, "9": 1 } },
  ];
  const checks: CheckRecord[] = [
    { check: "memfd.contents", status: "passed" },
    {
      check: "luo.handover",
      status: "not-done",
      notDone: "handover-pause-late",
      detail: "late",
      accepted: true,
    },
    { check: "memfd.frames", status: "failed", detail: "frame 0x12e00 moved" },
  ];

  it("reads a result's facts and checks back as written", () => {
    const back = parseReport(JSON.parse(JSON.stringify(v2({ facts, checks }))), "r.json").doc;
    expect(back.results[0]?.facts).toEqual(facts);
    expect(back.results[0]?.checks).toEqual(checks);
  });

  it("names the path of a wrong fact or check in one sentence", () => {
    const missingCount = { kind: "memfds-restored", memfds: 2, sessions: 1, bytes: 8192 };
    expect(refusal(() => parseReport(v2({ facts: [facts[0], missingCount] }), "r.json"))).toBe(
      "r.json is not a valid kho run report: results[0].facts[1].frames should be a number, got missing",
    );
    expect(() => parseReport(v2({ facts: [{ kind: "rumour", says: "ok" }] }), "r.json")).toThrow(
      /^r\.json is not a valid kho run report: results\[0\]\.facts\[0\]\.kind should be memfds-restored\|blackout\|.*, got "rumour"$/,
    );
    expect(() => parseReport(v2({ facts: [{ ...facts[2], orders: { "0": 1.5 } }] }), "r.json")).toThrow(
      "results[0].facts[0].orders.0 should be an integer, got 1.5",
    );
    expect(() =>
      parseReport(v2({ checks: [{ check: "x", status: "skipped" }, { status: "passed" }] }), "r.json"),
    ).toThrow(
      'r.json is not a valid kho run report: results[0].checks[0].status should be passed|failed|not-done, got "skipped" (and 1 more problem)',
    );
    expect(() =>
      parseReport(v2({ checks: [{ check: "x", status: "not-done", notDone: "tired" }] }), "r.json"),
    ).toThrow(/results\[0\]\.checks\[0\]\.notDone should be handover-read-failed\|/);
    expect(() => parseReport(v2({ attempt: 0 }), "r.json")).toThrow(
      "results[0].attempt should be at least 1, got 0",
    );
  });

  it("reads an absent setupFailures as none and leaves out KVM verdicts of arches it does not know", () => {
    const host = { ...unknownHost("h"), kvm: { riscv64: "?", x86_64: { usable: true, probedAt: "t" } } };
    const { setupFailures: _, ...noFailures } = v2({}, { host });
    const doc = parseReport(noFailures, "r.json").doc;
    expect(doc.setupFailures).toEqual([]);
    expect(doc.host.kvm).toEqual({ x86_64: { usable: true, probedAt: "t" } });
    expect(() => parseReport(v2({}, { setupFailures: [{ arch: "x86_64" }] }), "r.json")).toThrow(
      "r.json is not a valid kho run report: setupFailures[0].stage should be a string, got missing (and 3 more problems)",
    );
  });

  it("builds a @2 document from the runner's report, which reads back unchanged", async () => {
    const config = new Map([
      ["KEXEC_HANDOVER", "y"],
      ["LIVEUPDATE", "y"],
      ["HUGETLBFS", "n"],
    ]);
    const report: RunReport = {
      setupFailures: [],
      setups: [
        {
          arch: "arm64",
          accel: "tcg",
          accelReason: "KVM unusable: KVM cannot run arm64 guests on a x64 host",
          phaseMs: { kernel: 90, inspect: 150 },
          kernel: {
            image: "/nonexistent/Image",
            release: "7.2.13",
            config,
            nextImage: "/nonexistent/Image",
            built: undefined,
            features: new Set(),
          },
        },
      ],
      results: [
        {
          id: "memfd-basic",
          arch: "arm64",
          verdict: "fail",
          reason: SPECIAL,
          evidence: ["<oops>"],
          phaseMs: { boot: 4000, kexec: 6000 },
          totalMs: 11000,
        },
      ],
    };
    const doc = await buildRunDocument(report, {
      wallMs: 12_345,
      argv: ["kho", "run"],
      startedAt: new Date("2026-11-22T02:00:00Z"),
      qemu: (arch) =>
        Promise.resolve({
          binary: `qemu-${arch}`,
          version: "10.0.2",
          banner: "QEMU emulator version 10.0.2",
        }),
      host: () =>
        Promise.resolve({
          hostname: "ci",
          os: "Linux 6.1.0",
          cpuArch: "x64",
          cpuModel: "Xeon",
          cpus: 2,
          memoryMiB: 8000,
          node: "v20.19.0",
          kvm: {
            arm64: { usable: false, reason: "KVM cannot run arm64 guests on a x64 host", probedAt: "x" },
          },
        }),
    });
    expect(doc).toMatchObject({
      schema: "kho-harness/run-report@2",
      startedAt: "2026-11-22T02:00:00.000Z",
      exitCode: 1,
      totals: { fail: 1, pass: 0 },
      arches: [
        {
          arch: "arm64",
          accelReason: "KVM unusable: KVM cannot run arm64 guests on a x64 host",
          qemu: { version: "10.0.2" },
          kernel: { imageSha256: null, configSha256: configSha256(config), configOptions: 3, source: null },
        },
      ],
    });
    const back = parseReport(JSON.parse(JSON.stringify(doc)));
    expect(back.upgradedFrom).toBeUndefined();
    expect(back.doc).toEqual(doc);
    // The setup table carries what the @2 report knows.
    const md = renderMarkdown(doc, "/tmp/run");
    expect(md).toContain("# KHO run 2026-11-22 02:00:00 UTC: FAIL");
    expect(md).toMatch(
      /\| arm64 \| 7\.2\.13 \| `[0-9a-f]{16}` \| TCG: KVM unusable: KVM cannot run arm64 guests on a x64 host \| qemu-arm64 10\.0\.2 \| kernel 90 ms, inspect 150 ms \|/,
    );
    expect(md).toContain("- KVM probe: arm64: unusable (KVM cannot run arm64 guests on a x64 host)");
  });
});

describe("facts", () => {
  it("QEMU's version from its banner", () => {
    expect(parseQemuVersion("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)")).toBe(
      "10.0.2",
    );
    expect(parseQemuVersion("QEMU emulator version 8.2")).toBe("8.2");
    expect(parseQemuVersion("something else")).toBeNull();
  });

  it("the config hash ignores the order options were read in and changes with any value", () => {
    const a = configSha256(
      new Map([
        ["A", "y"],
        ["B", "n"],
      ]),
    );
    expect(
      configSha256(
        new Map([
          ["B", "n"],
          ["A", "y"],
        ]),
      ),
    ).toBe(a);
    expect(
      configSha256(
        new Map([
          ["A", "y"],
          ["B", "m"],
        ]),
      ),
    ).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("escaping", () => {
  it("HTML/SVG text and attributes", () => {
    expect(escapeXml(`a<b & "c" 'd'>`)).toBe("a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;");
  });

  it("a Markdown table cell stays one cell on one line", () => {
    expect(escapeMarkdownCell("x | y\n<oops> & `z` [#1]")).toBe(
      "x \\| y &lt;oops&gt; &amp; \\`z\\` \\[#1\\]",
    );
  });
});

describe("summary.md", () => {
  it("has the verdict, setup, timing and host sections of a real run", async () => {
    const r = await fixture("x86_64-pages");
    const md = renderMarkdown(r.doc, r.dir);
    expect(md).toContain("**3 pass, 1 xfail of 4 results**; wall time 49.3 s; exit code 0.");
    expect(md).toContain("# KHO run: PASS");
    expect(md).toContain("| scenario | arch | verdict | time | reason |");
    expect(md).toMatch(
      /^\| \[pages-dma-order9\]\(x86_64\/pages-dma-order9\/\) \| x86_64 \| \*\*XFAIL\*\* \| 12\.4 s \| without/m,
    );
    expect(md).toContain("| x86_64 | 7.2.13 | unknown | TCG | unknown | kernel 108 ms");
    expect(md).toContain("| scenario | arch | boot | build | kexec load | kexec | checks | other | total |");
    expect(md).toContain("| pages-folio-order0 | x86_64 | 4.1 | 0.0 | 0.8 | 6.7 | 0.0 | 0.5 | 12.1 |");
    expect(md).toContain("- hostname: vm");
  });

  it("cuts every boot at its console landmarks when the report has boot timings", async () => {
    const r = await fixture("x86_64-boots");
    const md = renderMarkdown(r.doc, r.dir);
    expect(md).toContain("## Where each boot's time went (seconds)");
    expect(md).toContain(
      "| scenario | arch | boot | firmware | shutdown | handover | kernel | init | ssh | total |",
    );
    expect(md).toContain("| test-kho | x86_64 | 1 (boot) | 2.6 |  |  | 6.4 | 2.3 | 1.0 | 12.4 |");
    expect(md).toContain("| test-kho | x86_64 | 2 (kexec) |  | 1.6 | 2.8 | 5.4 | 1.9 | 0.9 | 12.6 |");
    // Reports from before boot timings have no such section.
    expect(renderMarkdown((await fixture("x86_64-pages")).doc, r.dir)).not.toContain("Where each boot");
  });

  it('escapes reasons with <, & and "', async () => {
    const r = await fixture("x86_64-pages-regressed");
    const md = renderMarkdown(r.doc, r.dir);
    expect(md).toContain('folio order 9: tails {"0":510} &lt;expected 511&gt; &amp; head_ref 2');
    expect(md).not.toContain("<expected");
  });

  it("takes the run's time from its folder name when the report has none", () => {
    expect(runTime({ startedAt: null }, "/x/out/runs/2026-11-22T02-06-34-355Z")).toBe(
      "2026-11-22T02:06:34.355Z",
    );
    expect(runTime({ startedAt: null }, "/x/fixture")).toBeUndefined();
  });

  it("links artifacts relative to the run folder, also after the folder moved", async () => {
    const r = await fixture("x86_64-mixed");
    const [first] = r.doc.results;
    if (!first) throw new Error("no result");
    expect(artifactsLink(first, "/work/main/out/runs/2026-11-22T02-06-34-355Z")).toBe(
      "x86_64/pages-folio-order18",
    );
    expect(artifactsLink(first, r.dir)).toBe("x86_64/pages-folio-order18");
  });
});

describe("summary.html", () => {
  it("is self-contained: no script, stylesheet link, external image or font", async () => {
    const r = await fixture("x86_64-mixed");
    const html = renderHtml(r.doc, r.dir);
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).not.toMatch(/<script|<link|<img|<iframe|src=|url\(|@import|href="(?:https?:)?\/\//i);
    expect(html).toContain("<style>");
    expect(html).toContain('<h1>KHO run <span class="verdict status"');
    // The failure's console excerpt, escaped, in a <details>.
    expect(html).toContain("evidence (31 lines)");
    expect(html).toContain("Oops: int3: 0000 [#1] SMP NOPTI");
    expect(html).toContain("&lt;TASK&gt;");
    expect(html).toContain('<a href="x86_64/chain-memfd/console.log">console</a>');
    assertBalancedXml(html.replace(/<!DOCTYPE html>|<meta [^>]*>|<br>/g, ""));
  });

  it('escapes reasons and evidence with <, & and "', async () => {
    const r = await fixture("x86_64-pages-regressed");
    const html = renderHtml(r.doc, r.dir);
    expect(html).toContain("folio order 9: tails {&quot;0&quot;:510} &lt;expected 511&gt; &amp; head_ref 2");
    expect(html).toContain("pfn:0x12e00 &lt;oops&gt;");
    expect(html).toContain("expected tails {&quot;0&quot;:511} &amp; got {&quot;0&quot;:510}");
    expect(html).not.toContain("<expected");
    expect(html).not.toContain("<oops>");
  });

  it("rebuilds from DIR/report.json with `kho report DIR`", { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "kho-report-"));
    tmpDirs.push(dir);
    await cp(join(FIXTURES, "x86_64-pages"), dir, { recursive: true });
    const r = await execa("node", ["bin/kho", "report", dir], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.split("\n")).toEqual([join(dir, "summary.md"), join(dir, "summary.html")]);
    const html = await readFile(join(dir, "summary.html"), "utf8");
    expect(html).toContain("pages-split-order9 · x86_64");
    expect(await readFile(join(dir, "summary.md"), "utf8")).toContain("**3 pass, 1 xfail of 4 results**");
  });

  it("`kho report` refuses bad input in one sentence, exit code 2", { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "kho-report-"));
    tmpDirs.push(dir);
    await writeFile(join(dir, "other.json"), JSON.stringify({ schema: "kho-harness/run-report@3" }));
    const cases: [string[], RegExp][] = [
      [[join(dir, "missing")], /does not exist: give a run folder/],
      [[dir], /has no report\.json: is it a run folder/],
      [["package.json"], /package\.json is not a kho run report \(no "schema" field\)/],
      [[join(dir, "other.json")], /has schema kho-harness\/run-report@3, which this harness cannot read/],
    ];
    const runs = await Promise.all(
      cases.map(([args]) => execa("node", ["bin/kho", "report", ...args], { reject: false })),
    );
    for (const [i, [, message]] of cases.entries()) {
      const r = runs[i];
      if (!r) throw new Error("missing run");
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/^kho: /);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe("timing chart (SVG)", () => {
  const doc = (results: RunReportDoc["results"]): RunReportDoc => ({
    schema: RUN_REPORT_SCHEMA,
    startedAt: null,
    startedFrom: "",
    wallMs: 0,
    exitCode: 0,
    totals: { pass: 0, fail: 0, xfail: 0, xpass: 0, skip: 0, error: 0, notrun: 0 },
    setupFailures: [],
    host: unknownHost("h"),
    arches: [],
    results,
  });

  it("one stacked bar per scenario and arch, one colour per phase, legend and axis in seconds", async () => {
    const r = await fixture("x86_64-pages");
    const rows = timingRows(r.doc);
    expect(rows.map((x) => x.label)).toEqual([
      "pages-folio-order0 · x86_64",
      "pages-folio-order9 · x86_64",
      "pages-split-order9 · x86_64",
      "pages-dma-order9 · x86_64",
    ]);
    const legend = phaseLegend(rows);
    expect(legend.map(([n]) => n)).toEqual(["boot", "build", "kexec load", "kexec", "checks", "other"]);
    expect(new Set(legend.map(([, c]) => c)).size).toBe(legend.length);
    const svg = timingChart(rows);
    assertBalancedXml(svg);
    // Legend swatches + 6 segments per bar.
    expect(svg.match(/<rect /g)).toHaveLength(legend.length + 4 * 6);
    for (const s of ["0", "5", "10", "15"]) expect(svg).toContain(`text-anchor="middle">${s}</text>`);
    expect(svg).toContain(">seconds</text>");
    expect(svg).toContain("<title>pages-folio-order0 · x86_64: kexec 6.7 s</title>");
    // Segment widths follow the times: the kexec bar of folio-order0 is 6725/12092 of its row.
    const widths = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"/g)].map((m) =>
      Number(m[1]),
    );
    const firstRow = widths.slice(0, 6);
    const total = firstRow.reduce((a, b) => a + b, 0);
    expect((firstRow[3] ?? 0) / total).toBeCloseTo(6725 / 12092, 2);
  });

  it("escapes labels and phase names, marks untimed results", () => {
    const svg = timingChart(
      timingRows(
        doc([
          { id: 'a<&">', arch: "x86_64", verdict: "fail", phaseMs: { 'p<&"': 1500 }, totalMs: 1500 },
          { id: "b", arch: "arm64", verdict: "skip", reason: "kernel lacks X", phaseMs: {}, totalMs: 0 },
        ]),
      ),
    );
    assertBalancedXml(svg);
    expect(svg).toContain("a&lt;&amp;&quot;&gt; · x86_64");
    expect(svg).toContain(">p&lt;&amp;&quot;</text>");
    expect(svg).not.toMatch(/a<&/);
    expect(svg).toContain("SKIP (not timed)");
  });

  it("picks 1, 2 or 5 times a power of ten for ticks", () => {
    expect(niceStep(15)).toBe(5);
    expect(niceStep(34)).toBe(10);
    expect(niceStep(120)).toBe(20);
    expect(niceStep(0.4)).toBe(0.1);
  });
});
