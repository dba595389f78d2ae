// history.html: the page of `kho report history`. Self-contained like summary.html: inline style
// and SVG, no script, no font or style sheet fetched, nothing loaded from anywhere. The runs with
// their kernels on top, the timeline (scenario × arch by run), then each phase's time across the
// runs as line charts drawn here, with the phase colours of the summary page's chart.
import { TOTAL } from "./compare.js";
import { displayTime, escapeXml as h, htmlHead, runStatus, seconds, totalsLine } from "./format.js";
import type { History, HistoryCell, HistoryKernel, HistoryRow, PhaseSeries } from "./history-schema.js";
import { CHAR_W, FONT, fmt, lineLegend, niceStep, phaseLegend, VERDICT_COLOURS } from "./svg.js";
import type { Verdict } from "./verdict.js";

/** One colour per kernel of the history (in History.kernels order), for chips and chart bands. */
const KERNEL_COLOURS = [
  "#1f77b4",
  "#ff7f0e",
  "#17becf",
  "#bcbd22",
  "#8c564b",
  "#e377c2",
  "#9467bd",
  "#7f7f7f",
];
const ABSENT_COLOUR = "#eeeeee";
const TOTAL_COLOUR = "#333333";
const pct = (r: number) => `${Math.round(r * 100)}%`;

export interface HistoryPageOptions {
  /** Per run (History.runs order), a link to its summary.html relative to the page, if it has one. */
  readonly summaries?: readonly (string | undefined)[];
}

/** "2026-12-05T21:36:50.230Z" -> "12-05 21:36". */
function shortTime(iso: string | null): string {
  const m = iso ? /^\d{4}-(\d\d-\d\d)T(\d\d:\d\d)/.exec(iso) : null;
  return m ? `${m[1]} ${m[2]}` : "time unknown";
}

const runName = (i: number) => `#${i + 1}`;

interface KernelStyle {
  readonly kernel: HistoryKernel;
  /** "K1": the kernel's short name on the page. */
  readonly short: string;
  readonly colour: string;
}

function kernelStyles(history: History): Map<string, KernelStyle> {
  return new Map(
    history.kernels.map((kernel, i) => [
      `${kernel.arch}\0${kernel.key}`,
      { kernel, short: `K${i + 1}`, colour: KERNEL_COLOURS[i % KERNEL_COLOURS.length] ?? "#999" },
    ]),
  );
}

/** The kernel an arch ran in run `i`, with its style. */
function kernelIn(
  history: History,
  styles: Map<string, KernelStyle>,
  i: number,
  arch: string,
): (KernelStyle & { changed: boolean }) | undefined {
  const k = history.runs[i]?.kernels.find((x) => x.arch === arch);
  const style = k ? styles.get(`${arch}\0${k.key}`) : undefined;
  return k && style ? { ...style, changed: k.changed } : undefined;
}

function kernelTitle(style: KernelStyle, changed: boolean): string {
  const k = style.kernel;
  return [
    `${style.short}: ${k.arch} kernel ${k.label}`,
    k.source ? `source ${k.source}` : "",
    k.buildKey ? `build key ${k.buildKey}` : "",
    k.imageSha256 ? `image sha256 ${k.imageSha256}` : `image ${k.image}`,
    k.configSha256 ? `config sha256 ${k.configSha256}` : "",
    changed ? "a different kernel from the run before" : "",
  ]
    .filter(Boolean)
    .join("\n");
}

/** The kernel's short name in its colour, and its label unless `short`. */
function kernelChip(style: KernelStyle, changed = false, short = false): string {
  return (
    `<span class="kchip${changed ? " kchanged" : ""}" style="border-color:${style.colour}" title="${h(kernelTitle(style, changed))}">` +
    `<b style="color:${style.colour}">${style.short}</b>${short ? "" : ` ${h(style.kernel.label)}`}</span>`
  );
}

// --- The line chart ----------------------------------------------------------------------------

export interface ChartRun {
  /** Under the axis: "#3". */
  readonly label: string;
  /** Second line under the axis: "12-05 21:36". */
  readonly sub: string;
  /** The kernel the chart's arch ran: the run's band is shaded in its colour. */
  readonly kernel?: { readonly label: string; readonly short: string; readonly colour: string };
}

export interface ChartLine {
  readonly name: string;
  readonly colour: string;
  /** ms per run; null where not recorded (the line breaks there). */
  readonly values: readonly (number | null)[];
  readonly dashed?: boolean;
}

/**
 * Each line's time across the runs: one column per run (oldest left), seconds up, the runs of each
 * kernel shaded in the kernel's colour and named under the axis. A standalone SVG element (valid
 * inline in HTML) with class "phase-chart".
 */
export function phaseLineChart(
  title: string,
  runs: readonly ChartRun[],
  lines: readonly ChartLine[],
  opts: { readonly width?: number; readonly counts?: readonly number[] } = {},
): string {
  const width = opts.width ?? 960;
  const left = 56;
  const right = 16;
  const plotW = width - left - right;
  const { svg: legend, lastY } = lineLegend(lines, left, width, 0);
  const top = lastY + 30;
  const plotH = 200;
  const bottom = top + plotH;
  const n = Math.max(1, runs.length);
  const band = plotW / n;
  const cx = (i: number) => left + band * (i + 0.5);
  const maxMs = Math.max(0, ...lines.flatMap((l) => l.values.filter((v): v is number => v !== null)));
  const step = niceStep(maxMs / 1000, 5);
  const axisMax = Math.max(step, Math.ceil(maxMs / 1000 / step) * step);
  const y = (ms: number) => bottom - (ms / 1000 / axisMax) * plotH;

  // Kernel bands: consecutive runs of one kernel, shaded, named under the axis.
  const bands: string[] = [];
  const bandLabels: string[] = [];
  const labelY = bottom + 44 + (opts.counts ? 14 : 0);
  for (let i = 0; i < runs.length;) {
    const k = runs[i]?.kernel;
    let j = i + 1;
    while (j < runs.length && runs[j]?.kernel?.label === k?.label) j++;
    if (k) {
      const x0 = left + band * i;
      const w = band * (j - i);
      bands.push(
        `<rect x="${fmt(x0)}" y="${top}" width="${fmt(w)}" height="${plotH}" fill="${k.colour}" fill-opacity="0.1"><title>${h(`${k.short}: kernel ${k.label}`)}</title></rect>`,
      );
      if (i > 0)
        bands.push(
          `<line x1="${fmt(x0)}" y1="${top}" x2="${fmt(x0)}" y2="${bottom}" stroke="${k.colour}" stroke-dasharray="3 3"/>`,
        );
      const full = `${k.short} ${k.label}`;
      const text = full.length * CHAR_W <= w - 4 ? full : k.short;
      bandLabels.push(
        `<text x="${fmt(x0 + w / 2)}" y="${labelY}" text-anchor="middle" fill="${k.colour}" font-weight="bold">${h(text)}</text>`,
      );
    }
    i = j;
  }

  const grid: string[] = [];
  for (let i = 0; i * step <= axisMax + 1e-9; i++) {
    const s = i * step;
    const gy = fmt(y(s * 1000));
    const label = step < 1 ? s.toFixed(Math.ceil(-Math.log10(step))) : String(Math.round(s));
    grid.push(
      `<line x1="${left}" y1="${gy}" x2="${fmt(left + plotW)}" y2="${gy}" stroke="#e4e4e4"/>`,
      `<text x="${left - 6}" y="${fmt(y(s * 1000) + 4)}" text-anchor="end">${label}</text>`,
    );
  }
  const xLabels = runs.map(
    (r, i) =>
      `<text x="${fmt(cx(i))}" y="${bottom + 15}" text-anchor="middle">${h(r.label)}</text>` +
      `<text x="${fmt(cx(i))}" y="${bottom + 28}" text-anchor="middle" fill="#777">${h(r.sub)}</text>` +
      (opts.counts
        ? `<text x="${fmt(cx(i))}" y="${bottom + 41}" text-anchor="middle" fill="#777">${opts.counts[i] ?? 0} timed</text>`
        : ""),
  );

  const drawn = lines.map((line) => {
    const d: string[] = [];
    let pen = false;
    line.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      d.push(`${pen ? "L" : "M"}${fmt(cx(i))} ${fmt(y(v))}`);
      pen = true;
    });
    const dots = line.values.map((v, i) =>
      v === null
        ? ""
        : `<circle cx="${fmt(cx(i))}" cy="${fmt(y(v))}" r="3.5" fill="${line.colour}"><title>${h(`${line.name}, run ${runs[i]?.label ?? i + 1}: ${seconds(v)}`)}</title></circle>`,
    );
    return (
      `<g>${d.length ? `<path d="${d.join(" ")}" fill="none" stroke="${line.colour}" stroke-width="2"${line.dashed ? ' stroke-dasharray="6 4"' : ""}/>` : ""}` +
      `${dots.join("")}</g>`
    );
  });

  const height = labelY + 10;
  return [
    `<svg class="phase-chart" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${h(title)}" ${FONT}>`,
    `<title>${h(title)}</title>`,
    `<g fill="#333">${legend.join("")}</g>`,
    `<g>${bands.join("")}</g>`,
    `<g fill="#555">${grid.join("")}</g>`,
    `<line x1="${left}" y1="${bottom}" x2="${fmt(left + plotW)}" y2="${bottom}" stroke="#888"/>`,
    `<text transform="translate(14,${fmt(top + plotH / 2)}) rotate(-90)" text-anchor="middle" fill="#555">seconds</text>`,
    `<g fill="#333">${xLabels.join("")}</g>`,
    `<g>${bandLabels.join("")}</g>`,
    `<g>${drawn.join("")}</g>`,
    "</svg>",
  ].join("\n");
}

/** The phases as chart lines: phase colours as on the summary page, the total dashed. */
function chartLines(phases: readonly PhaseSeries[]): ChartLine[] {
  const named = phases.filter((p) => p.phase !== TOTAL);
  const colours = new Map(
    phaseLegend([{ label: "", verdict: "pass", segments: named.map((p) => [p.phase, 1]) }]),
  );
  return phases.map((p) =>
    p.phase === TOTAL
      ? { name: TOTAL, colour: TOTAL_COLOUR, values: p.ms, dashed: true }
      : { name: p.phase, colour: colours.get(p.phase) ?? "#999", values: p.ms },
  );
}

function chartRuns(history: History, styles: Map<string, KernelStyle>, arch: string): ChartRun[] {
  return history.runs.map((run, i) => {
    const k = kernelIn(history, styles, i, arch);
    return {
      label: runName(i),
      sub: shortTime(run.time),
      ...(k ? { kernel: { label: k.kernel.label, short: k.short, colour: k.colour } } : {}),
    };
  });
}

// --- The timeline ------------------------------------------------------------------------------

function cellBackground(cell: HistoryCell): string {
  if (cell.state === "absent") return ABSENT_COLOUR;
  if (cell.state !== "flaky") return VERDICT_COLOURS[cell.state];
  // Flaky: one stripe per attempt, in the attempt's colour.
  const n = cell.attempts.length;
  const stops = cell.attempts.map(
    (v, i) => `${VERDICT_COLOURS[v]} ${fmt((i / n) * 100)}% ${fmt(((i + 1) / n) * 100)}%`,
  );
  return `linear-gradient(90deg, ${stops.join(", ")})`;
}

function cellText(cell: HistoryCell): string {
  if (cell.state === "absent") return "·";
  const word = cell.state.toUpperCase();
  return cell.attempts.length > 1 && cell.state !== "flaky" ? `${word} ×${cell.attempts.length}` : word;
}

function cellTitle(history: History, row: HistoryRow, cell: HistoryCell, i: number): string {
  const run = history.runs[i];
  const kernel = run?.kernels.find((k) => k.arch === row.arch);
  const what =
    cell.state === "absent"
      ? "not in this run"
      : cell.state === "flaky"
        ? `FLAKY (${cell.attempts.join(", ")})`
        : cell.state.toUpperCase() +
          (cell.attempts.length > 1 ? ` in all ${cell.attempts.length} attempts` : "");
  return [
    `${row.id} · ${row.arch}, run ${runName(i)} (${run?.time ? displayTime(run.time) : (run?.dir ?? "")})`,
    `kernel ${kernel?.label ?? "unknown"}`,
    `${what}${cell.newFailure ? ": first run of a new failure" : ""}`,
    cell.reason ?? "",
  ]
    .filter(Boolean)
    .join("\n");
}

function flakeCell(row: HistoryRow): string {
  const f = row.flake;
  const switches = f.switchRate === null ? "–" : `${pct(f.switchRate)} (${f.switches}/${f.outcomes - 1})`;
  const title =
    `attempts disagreed in ${f.flakyRuns} of the ${f.presentRuns} runs that had it; ` +
    (f.switchRate === null
      ? "fewer than two pass/fail outcomes, no switches to count"
      : `${f.switches} of ${f.outcomes - 1} successive pass/fail outcomes switched`);
  return `<td class="flake${f.flakyRuns > 0 ? " hot" : ""}" title="${h(title)}">${f.flakyRuns}/${f.presentRuns} · ${h(switches)}</td>`;
}

function newFailuresCell(history: History, row: HistoryRow): string {
  const items = row.newFailures.map(
    (f) =>
      `<span title="${h(`${history.runs[f.run]?.dir ?? ""}${f.reason ? `\n${f.reason}` : ""}`)}">${runName(f.run)} ${h(f.state.toUpperCase())} on ${h(f.kernel ?? "an unknown kernel")}</span>`,
  );
  if (row.failingAtStart) items.unshift(`<span>failing since ${runName(0)} (or before)</span>`);
  return `<td class="newfail">${items.join("<br>")}</td>`;
}

function timeline(history: History, styles: Map<string, KernelStyle>): string {
  const arches = [...new Set(history.rows.map((r) => r.arch))];
  const head = [
    "<tr><th>scenario</th><th>arch</th>",
    ...history.runs.map(
      (run, i) =>
        `<th class="run" title="${h(`${run.dir}\n${run.time ? displayTime(run.time) : "time unknown"}`)}">${runName(i)}<br><small>${h(shortTime(run.time))}</small></th>`,
    ),
    "<th>flake rate<br><small>flaky runs · switches</small></th><th>new failures<br><small>first run, its kernel</small></th></tr>",
  ];
  const kernelRows = arches.map(
    (arch) =>
      `<tr class="kernels"><th colspan="2">kernel · ${h(arch)}</th>` +
      history.runs
        .map((_, i) => {
          const k = kernelIn(history, styles, i, arch);
          return `<td class="k">${k ? kernelChip(k, k.changed, true) + (k.changed ? ' <small class="kchange">new</small>' : "") : ""}</td>`;
        })
        .join("") +
      `<td colspan="2"></td></tr>`,
  );
  const body = history.rows.map(
    (row) =>
      `<tr><th class="scenario">${h(row.id)}</th><td>${h(row.arch)}</td>` +
      row.cells
        .map(
          (cell, i) =>
            `<td class="cell s-${cell.state}${cell.newFailure ? " new" : ""}" style="background:${cellBackground(cell)}" title="${h(cellTitle(history, row, cell, i))}">` +
            `${h(cellText(cell))}${cell.newFailure ? '<span class="mark">NEW</span>' : ""}</td>`,
        )
        .join("") +
      flakeCell(row) +
      newFailuresCell(history, row) +
      "</tr>",
  );
  return (
    `<div class="scroll"><table id="timeline"><thead>${head.join("")}${kernelRows.join("")}</thead>` +
    `<tbody>${body.join("\n")}</tbody></table></div>`
  );
}

function legend(): string {
  const states = [
    "pass",
    "fail",
    "error",
    "xfail",
    "xpass",
    "skip",
    "notrun",
  ] as const satisfies readonly Verdict[];
  const swatch = (bg: string, text: string, cls = "") =>
    `<span class="swatch${cls}" style="background:${bg}">${h(text)}</span>`;
  return (
    `<p class="legend">${states.map((s) => swatch(VERDICT_COLOURS[s], s.toUpperCase())).join(" ")} ` +
    `${swatch(`linear-gradient(90deg, ${VERDICT_COLOURS.pass} 0 50%, ${VERDICT_COLOURS.fail} 50% 100%)`, "FLAKY")} attempts disagreed · ` +
    `${swatch(ABSENT_COLOUR, "·", " absent")} not in the run · ` +
    `<span class="swatch new" style="background:${VERDICT_COLOURS.fail}">FAIL<span class="mark">NEW</span></span> first run of a new failure ` +
    `(failing after a run where it passed or was absent) · hover a cell for the reason</p>`
  );
}

// --- The page ----------------------------------------------------------------------------------

function runsTable(history: History, styles: Map<string, KernelStyle>, opts: HistoryPageOptions): string {
  const arches = [...new Set(history.runs.flatMap((r) => r.kernels.map((k) => k.arch)))];
  const rows = history.runs.map((run, i) => {
    const link = opts.summaries?.[i];
    const folder = h(run.dir.replace(/\/+$/, "").split("/").pop() ?? run.dir);
    const status = runStatus(run);
    const colour =
      run.exitCode === 0
        ? VERDICT_COLOURS.pass
        : run.exitCode === 4
          ? VERDICT_COLOURS.skip
          : VERDICT_COLOURS.fail;
    const kernels = arches.map((arch) => {
      const k = kernelIn(history, styles, i, arch);
      return `<td>${k ? kernelChip(k, k.changed) + (k.changed ? ' <small class="kchange">new kernel</small>' : "") : ""}</td>`;
    });
    return (
      `<tr><td>${runName(i)}</td><td>${h(run.time ? displayTime(run.time) : "unknown")}</td>` +
      `<td title="${h(`${run.dir}\n${run.startedFrom}`)}">${link ? `<a href="${h(encodeURI(link))}">${folder}</a>` : folder}</td>` +
      `<td><span class="verdict" style="background:${colour}">${h(status)}</span></td>` +
      `<td>${h(totalsLine(run.totals))}</td><td class="num">${h(seconds(run.wallMs))}</td>${kernels.join("")}</tr>`
    );
  });
  return (
    `<table id="runs"><thead><tr><th>run</th><th>started</th><th>folder</th><th>status</th><th>results</th><th>wall</th>` +
    `${arches.map((a) => `<th>kernel ${h(a)}</th>`).join("")}</tr></thead><tbody>${rows.join("\n")}</tbody></table>`
  );
}

function kernelsTable(history: History, styles: Map<string, KernelStyle>): string {
  const rows = [...styles.values()].map(({ kernel: k, short, colour }) => {
    const code = (s: string | null) => (s ? `<code title="${h(s)}">${h(s.slice(0, 16))}</code>` : "unknown");
    return (
      `<tr><td><b style="color:${colour}">${short}</b></td><td>${h(k.arch)}</td><td>${h(k.label)}</td>` +
      `<td>${h(k.source ?? "unknown")}</td><td>${code(k.buildKey)}</td><td>${code(k.imageSha256)}</td>` +
      `<td>${code(k.configSha256)}</td><td>${k.runs.map(runName).join(", ")}</td></tr>`
    );
  });
  return (
    `<table id="kernels"><thead><tr><th></th><th>arch</th><th>kernel</th><th>source</th><th>build key</th>` +
    `<th>image sha256</th><th>config sha256</th><th>runs</th></tr></thead><tbody>${rows.join("\n")}</tbody></table>`
  );
}

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em auto; max-width: 1220px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; border-bottom: 1px solid #ddd; }
p { margin: .3em 0; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #eee; vertical-align: middle; }
thead th { background: #f6f6f6; }
td.num { text-align: right; white-space: nowrap; }
code { font: 12px ui-monospace, monospace; background: #f3f3f3; padding: 1px 3px; }
small { color: #666; }
.scroll { overflow-x: auto; }
.verdict { font-weight: bold; color: #fff; padding: 1px 6px; border-radius: 3px; font-size: 12px; }
.kchip { display: inline-block; white-space: nowrap; border-left: 5px solid; padding: 0 4px; font-size: 12px; background: #fafafa; }
.kchip.kchanged { background: #fff4d6; }
.kchange { color: #a05a00; font-weight: bold; }
tr.kernels th, tr.kernels td { background: #fcfcfc; font-weight: normal; font-size: 12px; }
tr.kernels td.k { text-align: center; }
#runs td { white-space: nowrap; }
th.run { text-align: center; white-space: nowrap; }
th.scenario { font-weight: normal; white-space: nowrap; }
td.cell { color: #fff; font-weight: bold; font-size: 11px; text-align: center; min-width: 56px; border: 1px solid #fff; white-space: nowrap; }
td.cell.s-absent { color: #999; }
td.cell.new, .swatch.new { outline: 3px solid #111; outline-offset: -3px; }
.mark { display: inline-block; margin-left: 4px; padding: 0 3px; background: #111; color: #fff; font-size: 9px; border-radius: 2px; vertical-align: top; }
td.flake { font-size: 12px; white-space: nowrap; } td.flake.hot { color: #a05a00; font-weight: bold; }
td.newfail { font-size: 12px; white-space: nowrap; }
.legend { font-size: 12px; color: #555; }
.swatch { display: inline-block; color: #fff; font-weight: bold; font-size: 10px; padding: 1px 5px; }
.swatch.absent { color: #999; }
details { margin: .3em 0; } summary { cursor: pointer; }
footer { margin-top: 2em; color: #888; font-size: 12px; }
`;

function heading(history: History): string {
  const times = history.runs.map((r) => r.time).filter((t): t is string => t !== null);
  const first = times[0];
  const last = times[times.length - 1];
  const span = first && last ? `: ${displayTime(first)} to ${displayTime(last)}` : "";
  return `KHO run history, ${history.runs.length} run${history.runs.length === 1 ? "" : "s"}${span}`;
}

function overview(history: History): string {
  const newFailures = history.rows.reduce((a, r) => a + r.newFailures.length, 0);
  const flaky = history.rows.filter((r) => r.flake.flakyRuns > 0).length;
  const failingNow = history.rows.filter((r) => r.cells[r.cells.length - 1]?.failing).length;
  const kernels = [...new Set(history.kernels.map((k) => k.arch))]
    .map((arch) => `${history.kernels.filter((k) => k.arch === arch).length} on ${arch}`)
    .join(", ");
  return (
    `<p><strong>${newFailures} new failure${newFailures === 1 ? "" : "s"}</strong>; ` +
    `${failingNow} failing in the last run; ${flaky} scenario${flaky === 1 ? "" : "s"} flaky in a run; ` +
    `${history.rows.length} scenario × arch rows; kernels: ${kernels || "none recorded"}.</p>`
  );
}

export function renderHistoryHtml(history: History, opts: HistoryPageOptions = {}): string {
  const styles = kernelStyles(history);
  const charts = history.arches.map((a) => {
    const title = `${a.arch}: time per phase across the runs, summed over the scenarios timed in each run (seconds)`;
    return (
      `<h3>${h(a.arch)}</h3>` +
      `<div class="scroll">${phaseLineChart(title, chartRuns(history, styles, a.arch), chartLines(a.phases), { counts: a.scenarios })}</div>`
    );
  });
  const perRow = history.rows.map(
    (row) =>
      `<details><summary>${h(row.id)} · ${h(row.arch)}</summary><div class="scroll">` +
      phaseLineChart(
        `${row.id} · ${row.arch}: time per phase across the runs (seconds)`,
        chartRuns(history, styles, row.arch),
        chartLines(row.phases),
      ) +
      "</div></details>",
  );
  return [
    ...htmlHead(heading(history), CSS),
    `<h1>${h(heading(history))}</h1>`,
    overview(history),
    "<h2>Runs</h2>",
    `<div class="scroll">${runsTable(history, styles, opts)}</div>`,
    "<h2>Timeline</h2>",
    legend(),
    timeline(history, styles),
    "<h2>Time per phase</h2>",
    `<p class="legend">Each run is a column, oldest left; the runs of one kernel are shaded in its colour (K1, K2… as in the tables). Hover a point for its time.</p>`,
    ...charts,
    "<h2>Kernels</h2>",
    kernelsTable(history, styles),
    "<h2>Time per phase, per scenario</h2>",
    ...perRow,
    `<footer>Rendered from ${history.runs.length} report.json file${history.runs.length === 1 ? "" : "s"} (${h(history.schema)}) by <code>kho report history</code>; the same data is in history.json.</footer>`,
    "</body>",
    "</html>",
    "",
  ].join("\n");
}
