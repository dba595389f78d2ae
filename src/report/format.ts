// Small pieces the summary pages and the comparison share: escaping, durations, labels.
import { basename, isAbsolute, relative, sep } from "node:path";
import type { CheckRecord } from "../api/findings.js";
import type { Verdict } from "./verdict.js";
import { VERDICTS, type ReportResult, type RunReportDoc } from "./schema.js";

const XML_ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for HTML and SVG, in element content and in quoted attributes alike. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => XML_ENTITIES[c] ?? c);
}

/** The opening of a self-contained page (inline style, nothing fetched), up to <body>. */
export function htmlHead(title: string, css: string): string[] {
  return [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeXml(title)}</title>`,
    `<style>${css}</style>`,
    "</head>",
    "<body>",
  ];
}

/**
 * Escapes text for one Markdown table cell: one line, `|` and the characters that would start
 * markup or raw HTML are escaped, so a kernel message such as `<oops> & "x"` shows as it is.
 */
export function escapeMarkdownCell(text: string): string {
  return text
    .replace(/\r?\n/g, " ")
    .replace(/[\\`*[\]|]/g, (c) => `\\${c}`)
    .replace(/[&<>]/g, (c) => XML_ENTITIES[c] ?? c);
}

/** Inline code that survives backticks in the text. */
export function markdownCode(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = "`".repeat(longest + 1);
  return `${fence}${longest ? " " : ""}${text}${longest ? " " : ""}${fence}`;
}

/** Seconds with one decimal, for tables and charts ("6.4 s"); under a second in ms. */
export function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function resultName(r: Pick<ReportResult, "id" | "arch" | "attempt">): string {
  return `${r.id}.${r.arch}${r.attempt ? `#${r.attempt}` : ""}`;
}

/** The run's one-word status from its kselftest exit code. */
export function runStatus(doc: Pick<RunReportDoc, "exitCode">): string {
  switch (doc.exitCode) {
    case 0:
      return "PASS";
    case 1:
      return "FAIL";
    case 4:
      return "SKIP";
    default:
      return `EXIT ${doc.exitCode}`;
  }
}

/** "3 pass, 1 xfail of 4 results". */
export function totalsLine(totals: Readonly<Record<Verdict, number>>): string {
  const n = VERDICTS.reduce((a, v) => a + totals[v], 0);
  const parts = VERDICTS.filter((v) => totals[v] > 0).map((v) => `${totals[v]} ${v}`);
  return `${parts.join(", ") || "nothing"} of ${n} result${n === 1 ? "" : "s"}`;
}

/** When the run started: the report's own time, else the run folder's name (out/runs/<time>). */
export function runTime(doc: Pick<RunReportDoc, "startedAt">, dir: string): string | undefined {
  if (doc.startedAt) return doc.startedAt;
  const m = /^(\d{4}-\d\d-\d\dT\d\d)-(\d\d)-(\d\d)-(\d{3})Z$/.exec(basename(dir));
  return m ? `${m[1]}:${m[2]}:${m[3]}.${m[4]}Z` : undefined;
}

/** "2026-11-22T02:06:34.355Z" -> "2026-11-22 02:06:34 UTC". */
export function displayTime(iso: string): string {
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

/**
 * A scenario's artifacts folder relative to the run folder (for links in the summaries). A run
 * folder that moved keeps the `<arch>/<scenario>[/run-N]` tail that the runner lays out.
 */
export function artifactsLink(r: ReportResult, runDir: string): string | undefined {
  if (!r.artifactsDir) return undefined;
  const rel = relative(runDir, r.artifactsDir);
  if (rel && !rel.startsWith("..") && !isAbsolute(rel)) return rel.split(sep).join("/");
  const at = r.artifactsDir.lastIndexOf(`/${r.arch}/${r.id}`);
  return at >= 0 ? r.artifactsDir.slice(at + 1) : undefined;
}

/** The phases of a result in the order they ran, plus the time no phase accounts for. */
export function phaseSegments(r: Pick<ReportResult, "phaseMs" | "totalMs">): [string, number][] {
  const segments = Object.entries(r.phaseMs).filter(([, ms]) => ms > 0);
  const other = r.totalMs - segments.reduce((a, [, ms]) => a + ms, 0);
  return other >= 1 ? [...segments, [OTHER_PHASE, other]] : segments;
}

/** Time in a scenario outside its named phases (guest start-up files, teardown, SSH set-up). */
export const OTHER_PHASE = "other";

/**
 * One planned check as every report format writes it: `check memfd.contents: passed`,
 * `check memfd.frames: failed (frame 0x12e00 moved)`,
 * `check luo.handover: not-done (handover-pause-late: <what happened>); accepted`.
 */
export function checkLine(c: CheckRecord): string {
  const why = c.status === "not-done" ? [c.notDone, c.detail].filter(Boolean).join(": ") : (c.detail ?? "");
  return `check ${c.check}: ${c.status}${why ? ` (${why})` : ""}${c.status === "not-done" && c.accepted ? "; accepted" : ""}`;
}

/** The checks a result planned but did not do (shown next to its verdict everywhere). */
export function notDoneChecks(r: { readonly checks?: readonly CheckRecord[] }): readonly CheckRecord[] {
  return (r.checks ?? []).filter((c) => c.status === "not-done");
}
