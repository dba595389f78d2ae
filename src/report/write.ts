// The run's JSON report (report.json, schema in src/report/schema.ts), the summary pages next
// to it, and the closing summary table and JUnit XML.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
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
import { writeSummaries } from "./summary.js";
import { sha256File } from "../util/hash.js";
import { formatDuration } from "../util/log.js";
import type { ArchSetup, RunReport } from "../orchestrate/runner.js";
import { exitCodeFor } from "./verdict.js";

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

/** report.json and the summaries; returns report.json's path. Prefer writeRunReport. */
export async function writeJsonReport(
  outDir: string,
  report: RunReport,
  wallMs: number,
  argv: readonly string[],
): Promise<string> {
  return (await writeRunReport(outDir, report, { wallMs, argv })).json;
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
    r.reason ?? "",
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

const xml = (s: string) =>
  s.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? c,
  );

/** JUnit XML for CI systems: one testsuite per arch, one testcase per scenario. */
export function junitXml(report: RunReport): string {
  const arches = [
    ...new Set([...report.results.map((r) => r.arch), ...report.setupFailures.map((f) => f.arch)]),
  ];
  const suites = arches.map((arch) => {
    const rs = report.results.filter((r) => r.arch === arch);
    const setup = report.setupFailures.filter((f) => f.arch === arch);
    const count = (...v: string[]) => rs.filter((r) => v.includes(r.verdict)).length;
    // The setup failure is one testcase with the error and its evidence; what it stopped is
    // skipped with a message naming it.
    const setupCases = setup.map(
      (f) =>
        `    <testcase classname="kho.${arch}" name="setup (${xml(f.stage)})" time="0.000"><error message="${xml(f.message)}">${xml(f.evidence.join("\n"))}</error></testcase>`,
    );
    const cases = rs.map((r) => {
      const body =
        r.verdict === "skip" || r.verdict === "notrun"
          ? `<skipped message="${xml(r.reason ?? "")}"/>`
          : r.verdict === "fail" || r.verdict === "xpass"
            ? `<failure message="${xml(r.reason ?? "")}">${xml((r.evidence ?? []).join("\n"))}</failure>`
            : r.verdict === "error"
              ? `<error message="${xml(r.reason ?? "")}">${xml((r.evidence ?? []).join("\n"))}</error>`
              : r.reason
                ? `<system-out>${xml(r.reason)}</system-out>`
                : "";
      return `    <testcase classname="kho.${arch}" name="${xml(r.id)}" time="${(r.totalMs / 1000).toFixed(3)}">${body}</testcase>`;
    });
    const time = rs.reduce((a, r) => a + r.totalMs, 0) / 1000;
    return [
      `  <testsuite name="kho.${arch}" tests="${rs.length + setup.length}" failures="${count("fail", "xpass")}" errors="${count("error") + setup.length}" skipped="${count("skip", "notrun")}" time="${time.toFixed(3)}">`,
      ...setupCases,
      ...cases,
      "  </testsuite>",
    ].join("\n");
  });
  return ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>", ...suites, "</testsuites>", ""].join(
    "\n",
  );
}
