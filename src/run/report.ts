// The run's JSON report and the closing summary table.
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { formatDuration } from "../util/log.js";
import type { ArchSetup, RunReport } from "./runner.js";
import { exitCodeFor } from "./verdict.js";

export const REPORT_SCHEMA = "kho-harness/run-report@1";

export async function writeJsonReport(
  outDir: string,
  report: RunReport,
  wallMs: number,
  argv: readonly string[],
): Promise<string> {
  const path = join(outDir, "report.json");
  const json = {
    schema: REPORT_SCHEMA,
    host: hostname(),
    startedFrom: argv.join(" "),
    wallMs: Math.round(wallMs),
    exitCode: exitCodeFor(report.results),
    arches: report.setups.map((s: ArchSetup) => ({
      arch: s.arch,
      accel: s.accel,
      kernel: { image: s.kernel.image, release: s.kernel.release, next: s.kernel.nextImage },
      phaseMs: s.phaseMs,
    })),
    results: report.results,
  };
  await writeFile(path, JSON.stringify(json, null, 2) + "\n");
  return path;
}

export function summaryTable(report: RunReport): string {
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
  return [line(header), ...rows.map(line)].join("\n");
}

const xml = (s: string) =>
  s.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? c,
  );

/** JUnit XML for CI systems: one testsuite per arch, one testcase per scenario. */
export function junitXml(report: RunReport): string {
  const arches = [...new Set(report.results.map((r) => r.arch))];
  const suites = arches.map((arch) => {
    const rs = report.results.filter((r) => r.arch === arch);
    const count = (...v: string[]) => rs.filter((r) => v.includes(r.verdict)).length;
    const cases = rs.map((r) => {
      const body =
        r.verdict === "skip"
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
      `  <testsuite name="kho.${arch}" tests="${rs.length}" failures="${count("fail", "xpass")}" errors="${count("error")}" skipped="${count("skip")}" time="${time.toFixed(3)}">`,
      ...cases,
      "  </testsuite>",
    ].join("\n");
  });
  return ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>", ...suites, "</testsuites>", ""].join(
    "\n",
  );
}
