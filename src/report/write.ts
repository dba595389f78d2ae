// The run's JSON report (report.json, schema in src/report/schema.ts), the summary pages next
// to it, and the closing summary table and JUnit XML.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "xmlbuilder2";
import type { ArchName } from "../arch.js";
import { configSha256, hostInfo, qemuVersion } from "./collect.js";
import {
  countVerdicts,
  RUN_REPORT_SCHEMA,
  type ArchEntry,
  type HostInfo,
  type QemuInfo,
  type RunReportDoc,
} from "./schema.js";
import { checkLine, notDoneChecks } from "./format.js";
import { writeSummaries } from "./summary.js";
import { sha256File } from "../util/hash.js";
import { formatDuration } from "../util/log.js";

import {
  exitCodeFor,
  type ArchSetup,
  type RunReport,
  type ScenarioResult,
  type SetupFailure,
} from "./verdict.js";

export const REPORT_SCHEMA = RUN_REPORT_SCHEMA;

/** An arch's setup as the runner describes it. */
export type ArchSetupInput = ArchSetup;

export interface ReportFacts {
  readonly wallMs: number;
  /** The command line (process.argv without node). */
  readonly argv: readonly string[];
  /** When the run started (default: now minus wallMs). */
  readonly startedAt?: Date;
  /** Overridable for tests: QEMU's version per arch and the host's facts. */
  readonly qemu?: (arch: ArchName) => Promise<QemuInfo>;
  readonly host?: () => Promise<HostInfo>;
}

/** The report.json document of a finished run. */
export async function buildRunDocument(report: RunReport, facts: ReportFacts): Promise<RunReportDoc> {
  const qemu = facts.qemu ?? qemuVersion;
  const arches = await Promise.all(report.setups.map((s: ArchSetupInput) => archEntry(s, qemu)));
  const startedAt = facts.startedAt ?? new Date(Date.now() - facts.wallMs);
  return {
    schema: RUN_REPORT_SCHEMA,
    startedAt: startedAt.toISOString(),
    startedFrom: facts.argv.join(" "),
    wallMs: Math.round(facts.wallMs),
    exitCode: exitCodeFor(report.results),
    totals: countVerdicts(report.results),
    host: await (facts.host ?? hostInfo)(),
    arches,
    setupFailures: report.setupFailures,
    results: report.results,
    ...(report.shard ? { shard: report.shard } : {}),
  };
}

async function archEntry(s: ArchSetupInput, qemu: (arch: ArchName) => Promise<QemuInfo>): Promise<ArchEntry> {
  const manifest = s.kernel.built?.manifest;
  const imageSha256 = manifest?.imageSha256 ?? (await sha256File(s.kernel.image).catch(() => null));
  return {
    arch: s.arch,
    accel: s.accel,
    accelReason: s.accelReason,
    qemu: await qemu(s.arch),
    kernel: {
      image: s.kernel.image,
      imageSha256,
      release: s.kernel.release,
      next: s.kernel.nextImage,
      configSha256: s.kernel.config.size > 0 ? configSha256(s.kernel.config) : null,
      configOptions: s.kernel.config.size > 0 ? s.kernel.config.size : null,
      source: manifest?.sourceIdentity ?? null,
      buildKey: manifest?.key ?? null,
    },
    phaseMs: s.phaseMs,
  };
}

export interface WrittenReport {
  readonly doc: RunReportDoc;
  readonly json: string;
  readonly markdown: string;
  readonly html: string;
}

/** Writes report.json, summary.md and summary.html into the run folder. */
export async function writeRunReport(
  outDir: string,
  report: RunReport,
  facts: ReportFacts,
): Promise<WrittenReport> {
  const doc = await buildRunDocument(report, facts);
  const json = join(outDir, "report.json");
  await writeFile(json, JSON.stringify(doc, null, 2) + "\n");
  return { doc, json, ...(await writeSummaries(outDir, doc)) };
}

export function summaryTable(report: RunReport): string {
  const setupRows = report.setupFailures.map((f) => [
    `setup (${f.stage})`,
    f.arch,
    "ERROR",
    "",
    `${f.message} (${f.notRun} not run)`,
  ]);
  const rows = report.results.map((r) => [
    r.id,
    r.arch,
    r.verdict.toUpperCase(),
    formatDuration(r.totalMs),
    [r.reason ?? "", ...notDoneChecks(r).map(checkLine)].filter(Boolean).join("; "),
  ]);
  const header = ["scenario", "arch", "verdict", "time", "reason / notes"];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (i < 4 ? (r[i] ?? "").length : 0))),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i < 4 ? c.padEnd(widths[i] ?? 0) : c))
      .join("  ")
      .trimEnd();
  return [line(header), ...setupRows.map(line), ...rows.map(line)].join("\n");
}

type XMLBuilder = ReturnType<typeof create>;

/** JUnit's times: seconds with three decimals. */
const seconds = (ms: number) => (ms / 1000).toFixed(3);

/** An element whose text is `text`, left empty when there is none. */
const textElement = (parent: XMLBuilder, name: string, attrs: Record<string, string>, text: string) => {
  const e = parent.ele(name, attrs);
  if (text) e.txt(text);
};

/** JUnit XML for CI systems: one testsuite per arch, one testcase per scenario. */
export function junitXml(report: {
  readonly results: readonly ScenarioResult[];
  readonly setupFailures: readonly SetupFailure[];
}): string {
  // Text from consoles can hold characters XML 1.0 has no place for (ANSI escapes, NULs).
  const doc = create({ version: "1.0", encoding: "UTF-8", invalidCharReplacement: "\ufffd" });
  const root = doc.ele("testsuites");
  const arches = [
    ...new Set([...report.results.map((r) => r.arch), ...report.setupFailures.map((f) => f.arch)]),
  ];
  for (const arch of arches) {
    const rs = report.results.filter((r) => r.arch === arch);
    const setup = report.setupFailures.filter((f) => f.arch === arch);
    const count = (...v: string[]) => rs.filter((r) => v.includes(r.verdict)).length;
    const suite = root.ele("testsuite", {
      name: `kho.${arch}`,
      tests: String(rs.length + setup.length),
      failures: String(count("fail", "xpass")),
      errors: String(count("error") + setup.length),
      skipped: String(count("skip", "notrun")),
      time: seconds(rs.reduce((a, r) => a + r.totalMs, 0)),
    });
    // The setup failure is one testcase with the error and its evidence; what it stopped is
    // skipped with a message naming it.
    for (const f of setup) {
      const testcase = suite.ele("testcase", {
        classname: `kho.${arch}`,
        name: `setup (${f.stage})`,
        time: seconds(0),
      });
      textElement(testcase, "error", { message: f.message }, f.evidence.join("\n"));
    }
    for (const r of rs)
      junitCase(suite.ele("testcase", { classname: `kho.${arch}`, name: r.id, time: seconds(r.totalMs) }), r);
  }
  return `${doc.end({ prettyPrint: true })}\n`;
}

/**
 * A result's testcase: a property per planned check (its status), the verdict's element, and in
 * system-out the pass's note and a line per check (`check <id>: not-done (<reason>)`).
 */
function junitCase(testcase: XMLBuilder, r: ScenarioResult): void {
  const checks = r.checks ?? [];
  if (checks.length) {
    const props = testcase.ele("properties");
    for (const c of checks) props.ele("property", { name: `check.${c.check}`, value: c.status });
  }
  const evidence = (r.evidence ?? []).join("\n");
  if (r.verdict === "skip" || r.verdict === "notrun") testcase.ele("skipped", { message: r.reason ?? "" });
  else if (r.verdict === "fail" || r.verdict === "xpass")
    textElement(testcase, "failure", { message: r.reason ?? "" }, evidence);
  else if (r.verdict === "error") textElement(testcase, "error", { message: r.reason ?? "" }, evidence);
  const out = [
    ...(r.reason && (r.verdict === "pass" || r.verdict === "xfail") ? [r.reason] : []),
    ...checks.map(checkLine),
  ];
  if (out.length) textElement(testcase, "system-out", {}, out.join("\n"));
}
