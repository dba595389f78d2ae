// The summary pages of a run folder: summary.md (for a terminal, a PR comment, CI's job page)
// and summary.html (self-contained: inline style and SVG, no script, nothing fetched). Both are
// rendered from report.json alone, so `kho report DIR` can rebuild them any time.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  artifactsLink,
  checkLine,
  displayTime,
  escapeMarkdownCell as md,
  escapeXml as h,
  htmlHead,
  markdownCode,
  notDoneChecks,
  phaseSegments,
  runStatus,
  runTime,
  seconds,
  totalsLine,
} from "./format.js";
import { SEGMENT_NAMES } from "../session/boot-timeline.js";
import type { ArchEntry, HostInfo, ReportResult, RunReportDoc } from "./schema.js";
import { phaseLegend, timingChart, VERDICT_COLOURS, type TimingRow } from "./svg.js";

/** Evidence lines shown per result in the HTML page (the rest stays in report.json). */
const EVIDENCE_LINES = 40;

export function timingRows(doc: RunReportDoc): TimingRow[] {
  return doc.results.map((r) => ({
    label: `${r.id} · ${r.arch}${r.attempt ? ` #${r.attempt}` : ""}`,
    verdict: r.verdict,
    segments: phaseSegments(r),
  }));
}

const unknown = "unknown";

function kernelText(a: ArchEntry): string {
  return `${a.kernel.release}${a.kernel.source ? ` (${a.kernel.source})` : ""}`;
}

function accelText(a: ArchEntry): string {
  return `${a.accel.toUpperCase()}${a.accelReason ? `: ${a.accelReason}` : ""}`;
}

function qemuText(a: ArchEntry): string {
  return a.qemu.version ? `${a.qemu.binary} ${a.qemu.version}` : a.qemu.binary || unknown;
}

function setupText(a: ArchEntry): string {
  return Object.entries(a.phaseMs)
    .map(([p, ms]) => `${p} ${seconds(ms)}`)
    .join(", ");
}

function hostFacts(host: HostInfo): [string, string][] {
  const kvm = Object.entries(host.kvm)
    .map(([arch, v]) => `${arch}: ${v?.usable ? "usable" : `unusable (${v?.reason ?? "?"})`}`)
    .join("; ");
  const rows: [string, string | null][] = [
    ["hostname", host.hostname],
    ["system", host.os],
    ["CPU", host.cpuModel && host.cpus ? `${host.cpus} × ${host.cpuModel} (${host.cpuArch ?? "?"})` : null],
    ["memory", host.memoryMiB !== null ? `${(host.memoryMiB / 1024).toFixed(1)} GiB` : null],
    ["Node.js", host.node],
    ["KVM probe", kvm || null],
  ];
  return rows.map(([k, v]) => [k, v ?? unknown]);
}

/** Phase names over all results, in first-seen order ("other" last). */
function phaseColumns(doc: RunReportDoc): string[] {
  return phaseLegend(timingRows(doc)).map(([name]) => name);
}

function heading(doc: RunReportDoc, dir: string): string {
  const time = runTime(doc, dir);
  return `KHO run${time ? ` ${displayTime(time)}` : ""}`;
}

const title = (doc: RunReportDoc, dir: string) => `${heading(doc, dir)}: ${runStatus(doc)}`;

export function renderMarkdown(doc: RunReportDoc, dir: string): string {
  const out: string[] = [];
  const row = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  const table = (header: readonly string[], rows: readonly (readonly string[])[]) => [
    row(header),
    row(header.map(() => "---")),
    ...rows.map(row),
  ];
  out.push(`# ${md(title(doc, dir))}`, "");
  out.push(
    `**${md(totalsLine(doc.totals))}**; wall time ${seconds(doc.wallMs)}; exit code ${doc.exitCode}.`,
    "",
    `Command: ${markdownCode(doc.startedFrom)}`,
    "",
    "## Verdicts",
    "",
    ...table(
      ["scenario", "arch", "verdict", "time", "reason"],
      doc.results.map((r) => {
        const link = artifactsLink(r, dir);
        const name = md(`${r.id}${r.attempt ? ` #${r.attempt}` : ""}`);
        return [
          link ? `[${name}](${encodeURI(link)}/)` : name,
          md(r.arch),
          `**${r.verdict.toUpperCase()}**`,
          seconds(r.totalMs),
          md([r.reason ?? "", ...notDoneChecks(r).map(checkLine)].filter(Boolean).join("; ")),
        ];
      }),
    ),
    "",
    "## Setup per arch",
    "",
    ...table(
      ["arch", "kernel", "config sha256", "accelerator", "QEMU", "setup"],
      doc.arches.map((a) => [
        a.arch,
        md(kernelText(a)),
        a.kernel.configSha256 ? markdownCode(a.kernel.configSha256.slice(0, 16)) : unknown,
        md(accelText(a)),
        md(qemuText(a)),
        md(setupText(a)),
      ]),
    ),
    "",
  );
  const missing = [...new Set(doc.results.map((r) => r.arch))].filter(
    (arch) => !doc.arches.some((a) => a.arch === arch),
  );
  if (missing.length) out.push(`Not set up (see the results' reasons): ${missing.map(md).join(", ")}.`, "");
  const phases = phaseColumns(doc);
  out.push(
    "## Time per phase (seconds)",
    "",
    "The chart is in summary.html.",
    "",
    ...table(
      ["scenario", "arch", ...phases.map(md), "total"],
      doc.results.map((r) => [
        md(`${r.id}${r.attempt ? ` #${r.attempt}` : ""}`),
        md(r.arch),
        ...phases.map((p) => {
          const ms = phaseSegments(r).find(([n]) => n === p)?.[1];
          return ms === undefined ? "" : (ms / 1000).toFixed(1);
        }),
        (r.totalMs / 1000).toFixed(1),
      ]),
    ),
    "",
  );
  const boots = bootRows(doc);
  if (boots.rows.length) {
    out.push(
      "## Where each boot's time went (seconds)",
      "",
      "From QEMU start (boot 1) or the kexec trigger to SSH up, cut where the console shows the kernel banner, `Run /init` and the init's ready line.",
      "",
      ...table(["scenario", "arch", "boot", ...boots.segments.map(md), "total"], boots.rows),
      "",
    );
  }
  out.push("## Host", "", ...hostFacts(doc.host).map(([k, v]) => `- ${k}: ${md(v)}`), "");
  return out.join("\n");
}

/** One row a boot of every result that recorded them; segment columns in the order they happen. */
function bootRows(doc: RunReportDoc): { segments: string[]; rows: string[][] } {
  const seen = new Set(
    doc.results.flatMap((r) => (r.boots ?? []).flatMap((b) => b.segments.map((s) => s.name))),
  );
  const segments = [
    ...SEGMENT_NAMES.filter((n) => seen.has(n)),
    ...[...seen].filter((n) => !SEGMENT_NAMES.includes(n)),
  ];
  const rows = doc.results.flatMap((r) =>
    (r.boots ?? []).map((b) => [
      md(`${r.id}${r.attempt ? ` #${r.attempt}` : ""}`),
      md(r.arch),
      `${b.boot} (${b.via})`,
      ...segments.map((name) => {
        const ms = b.segments.find((s) => s.name === name)?.ms;
        return ms === undefined ? "" : (ms / 1000).toFixed(1);
      }),
      (b.totalMs / 1000).toFixed(1),
    ]),
  );
  return { segments, rows };
}

const CSS = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f6f6f6; }
td.num { text-align: right; white-space: nowrap; }
code { font: 12px ui-monospace, monospace; background: #f3f3f3; padding: 1px 3px; }
pre { font: 12px ui-monospace, monospace; background: #f8f8f8; padding: 6px; overflow-x: auto; max-height: 24em; }
.verdict { font-weight: bold; color: #fff; padding: 1px 6px; border-radius: 3px; font-size: 12px; }
.status { font-size: .8em; vertical-align: middle; }
.chart { overflow-x: auto; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dt { color: #666; } dd { margin: 0; }
footer { margin-top: 2em; color: #888; font-size: 12px; }
`;

function badge(verdict: string, colour: string, extra = ""): string {
  return `<span class="verdict${extra}" style="background:${colour}">${h(verdict.toUpperCase())}</span>`;
}

function statusColour(doc: RunReportDoc): string {
  return doc.exitCode === 0
    ? VERDICT_COLOURS.pass
    : doc.exitCode === 4
      ? VERDICT_COLOURS.skip
      : VERDICT_COLOURS.fail;
}

function resultRow(r: ReportResult, dir: string): string {
  const link = artifactsLink(r, dir);
  const name = h(`${r.id}${r.attempt ? ` #${r.attempt}` : ""}`);
  const evidence = r.evidence ?? [];
  const shown = evidence.slice(-EVIDENCE_LINES);
  const details =
    evidence.length && r.verdict !== "pass"
      ? `<details><summary>evidence (${evidence.length} line${evidence.length === 1 ? "" : "s"}${evidence.length > shown.length ? `, last ${shown.length}` : ""})</summary><pre>${h(shown.join("\n"))}</pre></details>`
      : "";
  const links = link
    ? ` <small><a href="${h(encodeURI(link))}/">artifacts</a> · <a href="${h(encodeURI(link))}/console.log">console</a></small>`
    : "";
  // Checks planned but not done, each on its own line under the reason.
  const reason = [
    ...(r.reason ? [h(r.reason)] : []),
    ...notDoneChecks(r).map((c) => `<small>${h(checkLine(c))}</small>`),
  ].join("<br>");
  return (
    `<tr><td>${name}${links}</td><td>${h(r.arch)}</td><td>${badge(r.verdict, VERDICT_COLOURS[r.verdict])}</td>` +
    `<td class="num">${h(seconds(r.totalMs))}</td><td>${reason}${details}</td></tr>`
  );
}

export function renderHtml(doc: RunReportDoc, dir: string): string {
  const arches = doc.arches.map(
    (a) =>
      `<tr><td>${h(a.arch)}</td><td>${h(kernelText(a))}<br><small><code>${h(a.kernel.image)}</code></small></td>` +
      `<td>${a.kernel.configSha256 ? `<code title="${h(a.kernel.configSha256)}">${h(a.kernel.configSha256.slice(0, 16))}</code>${a.kernel.configOptions ? ` <small>(${a.kernel.configOptions} options)</small>` : ""}` : unknown}</td>` +
      `<td>${h(accelText(a))}</td><td>${h(qemuText(a))}${a.qemu.banner ? `<br><small>${h(a.qemu.banner)}</small>` : ""}</td>` +
      `<td>${h(setupText(a))}</td></tr>`,
  );
  return [
    ...htmlHead(title(doc, dir), CSS),
    `<h1>${h(heading(doc, dir))} ${badge(runStatus(doc), statusColour(doc), " status")}</h1>`,
    `<p><strong>${h(totalsLine(doc.totals))}</strong>; wall time ${h(seconds(doc.wallMs))}; exit code ${doc.exitCode}.<br>Command: <code>${h(doc.startedFrom)}</code></p>`,
    "<h2>Verdicts</h2>",
    "<table><thead><tr><th>scenario</th><th>arch</th><th>verdict</th><th>time</th><th>reason</th></tr></thead>",
    `<tbody>${doc.results.map((r) => resultRow(r, dir)).join("\n")}</tbody></table>`,
    "<h2>Setup per arch</h2>",
    "<table><thead><tr><th>arch</th><th>kernel</th><th>config sha256</th><th>accelerator</th><th>QEMU</th><th>setup</th></tr></thead>",
    `<tbody>${arches.join("\n")}</tbody></table>`,
    "<h2>Time per phase</h2>",
    `<div class="chart">${timingChart(timingRows(doc))}</div>`,
    "<h2>Host</h2>",
    `<dl>${hostFacts(doc.host)
      .map(([k, v]) => `<dt>${h(k)}</dt><dd>${h(v)}</dd>`)
      .join("")}</dl>`,
    `<footer>Rendered from report.json (${h(doc.schema)}) by <code>kho report</code>.</footer>`,
    "</body>",
    "</html>",
    "",
  ].join("\n");
}

/** Writes summary.md and summary.html into `dir`; returns their paths. */
export async function writeSummaries(
  dir: string,
  doc: RunReportDoc,
): Promise<{ markdown: string; html: string }> {
  const markdown = join(dir, "summary.md");
  const html = join(dir, "summary.html");
  await writeFile(markdown, renderMarkdown(doc, dir));
  await writeFile(html, renderHtml(doc, dir));
  return { markdown, html };
}
