// The report of `kho bench handover`: the terminal's text, the Markdown the README pastes, the
// charts (phase time against preserved size) and the self-contained HTML page. Pure: a
// HandoverBenchReport in, strings out. The three renderings share one set of tables (cells as
// plain strings) built once below; each only lays them out and escapes them its own way.
import {
  displayTime,
  escapeMarkdownCell as md,
  escapeXml as h,
  htmlHead,
  seconds,
} from "../report/format.js";
import { CHAR_W, FONT, fmt, lineLegend, niceStep, VERDICT_COLOURS } from "../report/svg.js";
import { table } from "./format.js";
import {
  HANDOVER_COLUMNS,
  type ComparisonVerdict,
  type HandoverBenchReport,
  type HandoverComparison,
  type HandoverFigures,
  type HandoverMetric,
  type HandoverPhase,
  type Spread,
} from "./handover-types.js";

type PhaseName = HandoverPhase | HandoverMetric;

const ALL_PHASES = HANDOVER_COLUMNS;

/** The first chart of the HTML page: the kernel's own phases, tens to hundreds of ms. */
export const BOOT_CHART_PHASES: readonly PhaseName[] = [
  "early-boot",
  "mm-init",
  "kernel-init",
  "deferred-pages",
  "shutdown",
  "purgatory",
];
/** The second: userspace and the agent's work, up to seconds. */
export const USERSPACE_CHART_PHASES: readonly PhaseName[] = [
  "userspace",
  "luo-retrieve",
  "readback",
  "module-restore",
  "blackout",
];

/** One colour per phase, distinct over all of them, so a phase looks the same in every chart. */
const HANDOVER_COLOURS: Readonly<Record<PhaseName, string>> = {
  shutdown: "#e15759",
  purgatory: "#f28e2b",
  "early-boot": "#4e79a7",
  "mm-init": "#9c755f",
  "kernel-init": "#59a14f",
  userspace: "#76b7b2",
  "luo-retrieve": "#b6992d",
  readback: "#d37295",
  "module-restore": "#499894",
  "deferred-pages": "#b07aa1",
  blackout: "#333333",
};

const VERDICT_COLOUR: Readonly<Record<ComparisonVerdict, string>> = {
  slower: VERDICT_COLOURS.fail,
  faster: VERDICT_COLOURS.pass,
  "no difference": VERDICT_COLOURS.skip,
};

/** How to read the figures; the text report, the HTML page and the README share it. */
export const READING_NOTE =
  "Under TCG (no KVM) the absolute milliseconds are those of an emulator, not the kernel's real cost; " +
  "what is meaningful there is the shape (what grows with the preserved size, which phase dominates) " +
  "and the A/B ratios, which are taken in one interleaved run. Under KVM the milliseconds are close to " +
  "those of the real machine.";

/** What a cell of the phase tables shows. */
const SPREAD_NOTE = "ms, median ±half the min-max range over the repeats";

// --- Numbers ---------------------------------------------------------------------------------

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A preserved size: "0", "64 MiB", "1 GiB", "1.5 GiB", "12 KiB". */
export function sizeLabel(bytes: number): string {
  if (bytes === 0) return "0";
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= GiB) return `${Number((bytes / GiB).toFixed(2))} GiB`;
  if (bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= MiB) return `${Number((bytes / MiB).toFixed(2))} MiB`;
  return bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

/** Milliseconds without the unit: integers from 10 up, one decimal below. */
function ms(v: number): string {
  if (!Number.isFinite(v)) return "-";
  return Math.abs(v) >= 10 ? String(Math.round(v)) : String(Number(v.toFixed(1)));
}

/** A fitted figure: integers from 10 up, then one decimal, then two significant digits. */
function num(v: number): string {
  if (!Number.isFinite(v)) return "-";
  const a = Math.abs(v);
  if (a >= 10) return String(Math.round(v));
  if (a >= 1 || a === 0) return String(Number(v.toFixed(1)));
  return String(Number(v.toPrecision(2)));
}

/** "412 ±9": the median and half the min-max range; the median alone with one repeat. */
export function spreadCell(s: Spread | null | undefined): string {
  if (!s) return "-";
  const half = (s.max - s.min) / 2;
  return s.n > 1 ? `${ms(s.median)} ±${ms(half)}` : ms(s.median);
}

const ratio = (r: number) => (Number.isFinite(r) ? r.toFixed(3) : "-");
const int = (v: number | undefined) => (v === undefined ? "-" : String(Math.round(v)));
const mibOf = (bytes: number | undefined) => (bytes === undefined ? "-" : num(bytes / MiB));

// --- The tables, shared by the text, the Markdown and the HTML -----------------------------------

interface Table {
  readonly head: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** The phases (and metrics) that have a sample at some size, in the tables' order. */
export function phasesWithData(f: HandoverFigures): PhaseName[] {
  return ALL_PHASES.filter((p) => f.phases[p]?.some((s) => s !== null && s !== undefined));
}

function figuresTitle(report: HandoverBenchReport, f: HandoverFigures): string {
  const release = report.kernels
    .find((k) => k.label === f.kernel)
    ?.images.find((i) => i.arch === f.arch)?.release;
  const repeats = `${report.repeat} repeat${report.repeat === 1 ? "" : "s"}`;
  return `${f.arch} ${f.shape}, kernel ${f.kernel} (${release ? `${release}, ` : ""}${repeats})`;
}

function phaseTable(f: HandoverFigures): Table {
  const phases = phasesWithData(f);
  return {
    head: ["size", ...phases],
    rows: f.sizes.map((size, i) => [sizeLabel(size), ...phases.map((p) => spreadCell(f.phases[p]?.[i]))]),
  };
}

function memoryTable(f: HandoverFigures): Table {
  return {
    head: [
      "size",
      "preserved pages",
      "radix pages",
      "LUO pages",
      "scratch MiB",
      "reserved KiB before",
      "reserved KiB after",
      "MemTotal KiB after",
    ],
    rows: f.sizes.map((size, i) => {
      const m = f.memory[i];
      return [
        sizeLabel(size),
        int(m?.preservedPages),
        int(m?.radixPages),
        int(m?.luoPages),
        mibOf(m?.scratchBytes),
        int(m?.reservedKiBBefore),
        int(m?.reservedKiBAfter),
        int(m?.memTotalKiBAfter),
      ];
    }),
  };
}

/** "mm-init: 123 ms/GiB (per repeat 110-130), 32 ms per million pages, 5 ms at 0". */
export function slopeLines(f: HandoverFigures): string[] {
  return f.slopes.map((s) => {
    const per = s.perRepeat.n > 0 ? ` (per repeat ${num(s.perRepeat.min)}-${num(s.perRepeat.max)})` : "";
    return `${s.phase}: ${num(s.msPerGiB)} ms/GiB${per}, ${num(s.msPerMillionPages)} ms per million pages, ${num(s.interceptMs)} ms at 0`;
  });
}

function comparisonTable(c: HandoverComparison): Table {
  return {
    head: ["phase", "ratio B/A", "interval", "B-A ms", "p", "verdict"],
    rows: c.phases.map((p) => [
      p.phase,
      ratio(p.ratio),
      `${ratio(p.lo)}-${ratio(p.hi)}`,
      p.deltaMs === undefined ? "-" : p.deltaMs.toFixed(1),
      p.p === undefined ? "-" : p.p.toPrecision(2),
      p.verdict,
    ]),
  };
}

function comparisonTitle(c: HandoverComparison): string {
  return `${c.arch} ${c.shape}: kernel B against kernel A`;
}

function comparisonNote(c: HandoverComparison): string {
  const level = Number((c.level * 100).toFixed(2));
  const effect = Number((c.minEffect * 100).toFixed(2));
  return (
    `method: ${c.method}; ${level}% intervals; ` +
    `minEffect ${c.minEffect} (a ratio within 1 ±${effect}% counts as no difference` +
    (c.minEffectMs ? `, and so does a difference under ${c.minEffectMs} ms a size)` : ")")
  );
}

function failureLines(report: HandoverBenchReport): string[] {
  return report.failures.map(
    (f) =>
      `${f.arch} ${f.shape}, kernel ${f.kernel}, repeat ${f.repeat}: ${f.reason}` +
      (f.artifacts ? ` (artifacts: ${f.artifacts})` : ""),
  );
}

/** "Handover bench on host (8 CPUs; x86_64 tcg, 4096 MiB guest), 2026-12-05 21:36:50 UTC". */
export function handoverCaption(report: HandoverBenchReport): string {
  const setup = report.setup.map((s) => `${s.arch} ${s.accel}, ${s.memoryMiB} MiB guest`);
  return (
    `Handover bench on ${report.host} (${report.cpus} CPU${report.cpus === 1 ? "" : "s"}` +
    `${setup.length ? `; ${setup.join("; ")}` : ""}), ${displayTime(report.startedAt)}`
  );
}

function kernelLines(report: HandoverBenchReport): string[] {
  return report.kernels.map((k) => {
    const images = k.images.map((i) => `${i.arch} ${i.release}`).join(", ");
    return (
      `kernel ${k.label}: ${k.spec}${images ? ` (${images})` : ""}` +
      (k.append ? `, appended parameters: ${k.append}` : "")
    );
  });
}

// --- Text ------------------------------------------------------------------------------------

/** A paragraph broken into lines of at most `width` characters (longer words stay whole). */
function wrap(text: string, width = 100): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

const indent = (lines: readonly string[]) => lines.map((l) => `  ${l}`);

/** What the terminal shows. */
export function formatHandoverText(report: HandoverBenchReport): string {
  const out: string[] = [handoverCaption(report), ...kernelLines(report), ""];
  for (const f of report.figures) {
    out.push(`${figuresTitle(report, f)}; ${SPREAD_NOTE}`);
    const phases = phaseTable(f);
    out.push(
      ...(phases.head.length > 1 ? indent(table([phases.head, ...phases.rows])) : ["  no phase timed"]),
    );
    const memory = memoryTable(f);
    out.push("  memory (medians):", ...indent(indent(table([memory.head, ...memory.rows]))));
    const slopes = slopeLines(f);
    if (slopes.length) out.push("  growth with preserved size:", ...indent(indent(slopes)));
    out.push("");
  }
  for (const c of report.comparisons) {
    const t = comparisonTable(c);
    out.push(comparisonTitle(c), ...indent(table([t.head, ...t.rows])), `  ${comparisonNote(c)}`, "");
  }
  const failures = failureLines(report);
  if (failures.length) out.push(`failures (${failures.length}):`, ...indent(failures), "");
  out.push(...wrap(READING_NOTE));
  return out.join("\n");
}

// --- Markdown --------------------------------------------------------------------------------

function markdownTable(t: Table): string[] {
  const row = (cells: readonly string[]) => `| ${cells.map(md).join(" | ")} |`;
  return [
    row(t.head),
    `| ${t.head.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...t.rows.map(row),
  ];
}

/** The same content as GitHub-flavoured Markdown. */
export function formatHandoverMarkdown(report: HandoverBenchReport): string {
  const out: string[] = [`_${md(handoverCaption(report))}_`, ""];
  const kernels = kernelLines(report);
  if (kernels.length) out.push(...kernels.map((k) => `- ${md(k)}`), "");
  for (const f of report.figures) {
    out.push(`#### ${md(figuresTitle(report, f))}`, "", `${md(SPREAD_NOTE)}:`, "");
    const phases = phaseTable(f);
    if (phases.head.length > 1) out.push(...markdownTable(phases), "");
    else out.push("No phase timed.", "");
    out.push("Memory (medians over the repeats):", "", ...markdownTable(memoryTable(f)), "");
    const slopes = slopeLines(f);
    if (slopes.length) out.push("Growth with preserved size:", "", ...slopes.map((s) => `- ${md(s)}`), "");
  }
  for (const c of report.comparisons) {
    out.push(`#### ${md(comparisonTitle(c))}`, "", ...markdownTable(comparisonTable(c)), "");
    out.push(md(comparisonNote(c)), "");
  }
  const failures = failureLines(report);
  if (failures.length)
    out.push(`#### Failures (${failures.length})`, "", ...failures.map((l) => `- ${md(l)}`), "");
  out.push(md(READING_NOTE), "");
  return out.join("\n");
}

// --- The chart -------------------------------------------------------------------------------

export interface HandoverChartOptions {
  /** Kernel B's figures for the same arch and shape: its lines are drawn dashed. */
  readonly compare?: HandoverFigures;
  readonly width?: number;
  /** Only these phases (and metrics); all that have data when absent. */
  readonly phases?: readonly string[];
}

interface Series {
  readonly phase: PhaseName;
  readonly colour: string;
  /** "A" or "B" in the points' tooltips (with a comparison only). */
  readonly side: string;
  readonly dashed: boolean;
  readonly sizes: readonly number[];
  readonly spreads: readonly (Spread | null | undefined)[];
}

/**
 * Each phase's median (ms, up) against the preserved size (MiB, across, linear, a tick at each
 * size), one polyline per phase with data and a min-max whisker at each point; with `compare`,
 * B's lines dashed in the same colour. A standalone SVG element (valid inline in HTML) with class
 * "handover-chart".
 */
export function handoverChart(figures: HandoverFigures, opts: HandoverChartOptions = {}): string {
  const width = opts.width ?? 820;
  const compare = opts.compare;
  const wanted = (p: PhaseName) => !opts.phases || opts.phases.includes(p);
  const withData = new Set([...phasesWithData(figures), ...(compare ? phasesWithData(compare) : [])]);
  const phases = ALL_PHASES.filter((p) => withData.has(p) && wanted(p));
  const series: Series[] = [];
  for (const phase of phases) {
    const colour = HANDOVER_COLOURS[phase];
    const add = (f: HandoverFigures, dashed: boolean) => {
      const spreads = f.phases[phase];
      if (spreads?.some((s) => s))
        series.push({ phase, colour, side: f.kernel, dashed, sizes: f.sizes, spreads });
    };
    add(figures, false);
    if (compare) add(compare, true);
  }
  const title = `${figures.arch} ${figures.shape}: handover phases vs preserved size`;

  const left = 64;
  const right = 24;
  const plotW = Math.max(120, width - left - right);
  // Legend: one entry per phase in its colour, then what solid and dashed mean; wraps.
  const entries: { name: string; colour: string; dashed: boolean }[] = phases.map((p) => ({
    name: p,
    colour: HANDOVER_COLOURS[p],
    dashed: false,
  }));
  if (compare)
    entries.push(
      { name: figures.kernel, colour: "#555", dashed: false },
      { name: compare.kernel, colour: "#555", dashed: true },
    );
  const { svg: legend, lastY } = lineLegend(entries, left, width, 22);
  const top = lastY + 32;
  const plotH = 240;
  const bottom = top + plotH;

  const sizes = [...new Set([...figures.sizes, ...(compare?.sizes ?? [])])].sort((a, b) => a - b);
  const maxMiB = Math.max(1, ...sizes.map((s) => s / MiB));
  const x = (bytes: number) => left + (bytes / MiB / maxMiB) * plotW;
  const maxMs = Math.max(
    0,
    ...series.flatMap((s) => s.spreads.map((v) => (v ? Math.max(v.max, v.median) : 0))),
  );
  const step = niceStep(maxMs, 5);
  const axisMax = Math.max(step, Math.ceil(maxMs / step) * step);
  const y = (v: number) => bottom - (Math.max(0, v) / axisMax) * plotH;

  const grid: string[] = [];
  for (let i = 0; i * step <= axisMax + 1e-9; i++) {
    const v = i * step;
    const label = step < 1 ? v.toFixed(Math.ceil(-Math.log10(step))) : String(Math.round(v));
    grid.push(
      `<line x1="${left}" y1="${fmt(y(v))}" x2="${fmt(left + plotW)}" y2="${fmt(y(v))}" stroke="#e4e4e4"/>`,
      `<text x="${left - 6}" y="${fmt(y(v) + 4)}" text-anchor="end">${label}</text>`,
    );
  }
  // A tick at each size; a label only where it does not run into the one before.
  const ticks: string[] = [];
  let lastEnd = -Infinity;
  for (const size of sizes) {
    const tx = x(size);
    const label = sizeLabel(size);
    const half = (label.length * CHAR_W) / 2;
    ticks.push(`<line x1="${fmt(tx)}" y1="${bottom}" x2="${fmt(tx)}" y2="${bottom + 5}" stroke="#888"/>`);
    if (tx - half >= lastEnd + 4) {
      ticks.push(`<text x="${fmt(tx)}" y="${bottom + 18}" text-anchor="middle">${h(label)}</text>`);
      lastEnd = tx + half;
    }
  }

  const drawn = series.map((s) => {
    const dashed = s.dashed;
    const points: string[] = [];
    const marks: string[] = [];
    s.sizes.forEach((size, i) => {
      const v = s.spreads[i];
      if (!v) return;
      const px = fmt(x(size));
      points.push(`${px},${fmt(y(v.median))}`);
      const tip = `${s.phase}${compare ? ` ${s.side}` : ""}, ${sizeLabel(size)}: median ${ms(v.median)} ms (${ms(v.min)}-${ms(v.max)}, n=${v.n})`;
      marks.push(
        `<line class="whisker" x1="${px}" y1="${fmt(y(v.min))}" x2="${px}" y2="${fmt(y(v.max))}" stroke="${s.colour}" stroke-width="1.5"/>`,
        `<circle cx="${px}" cy="${fmt(y(v.median))}" r="3.5" fill="${dashed ? "#fff" : s.colour}" stroke="${s.colour}" stroke-width="1.5"><title>${h(tip)}</title></circle>`,
      );
    });
    return (
      `<g class="phase" data-phase="${h(s.phase)}" data-kernel="${h(s.side)}">` +
      `<polyline points="${points.join(" ")}" fill="none" stroke="${s.colour}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ""}/>` +
      `${marks.join("")}</g>`
    );
  });

  const height = bottom + 44;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" class="handover-chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${h(title)}" ${FONT}>`,
    `<title>${h(title)}</title>`,
    `<text x="${left}" y="13" font-size="13" font-weight="bold" fill="#222">${h(title)}</text>`,
    `<g fill="#333">${legend.join("")}</g>`,
    `<g fill="#555">${grid.join("")}</g>`,
    `<line x1="${left}" y1="${bottom}" x2="${fmt(left + plotW)}" y2="${bottom}" stroke="#888"/>`,
    `<g fill="#555">${ticks.join("")}</g>`,
    `<text x="${fmt(left + plotW / 2)}" y="${bottom + 36}" text-anchor="middle" fill="#555">preserved size (MiB, linear)</text>`,
    `<text transform="translate(14,${fmt(top + plotH / 2)}) rotate(-90)" text-anchor="middle" fill="#555">ms (median, whisker min-max)</text>`,
    series.length
      ? `<g>${drawn.join("")}</g>`
      : `<text x="${fmt(left + plotW / 2)}" y="${fmt(top + plotH / 2)}" text-anchor="middle" fill="#777">no phase timed</text>`,
    "</svg>",
  ].join("\n");
}

// --- HTML ------------------------------------------------------------------------------------

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em auto; max-width: 1220px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.2em; margin: 1.4em 0 .4em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin: 1em 0 .3em; } h4 { font-size: 1em; margin: .8em 0 .2em; }
p { margin: .3em 0; }
table { border-collapse: collapse; margin: .3em 0 .6em; }
th, td { text-align: right; padding: 2px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f6f6f6; }
ul { margin: .2em 0 .6em; }
small, .note { color: #666; }
.scroll { overflow-x: auto; }
.verdict { font-weight: bold; color: #fff; padding: 1px 6px; border-radius: 3px; font-size: 12px; }
.reading { background: #f7f7f2; border-left: 4px solid #b6992d; padding: .4em .8em; }
footer { margin-top: 2em; color: #888; font-size: 12px; }
`;

function htmlTable(t: Table, cell: (text: string, col: number) => string = (text) => h(text)): string {
  return (
    `<table><thead><tr>${t.head.map((c) => `<th>${h(c)}</th>`).join("")}</tr></thead><tbody>` +
    t.rows.map((r) => `<tr>${r.map((c, i) => `<td>${cell(c, i)}</td>`).join("")}</tr>`).join("\n") +
    "</tbody></table>"
  );
}

function figuresHtml(report: HandoverBenchReport, f: HandoverFigures): string {
  const phases = phaseTable(f);
  const slopes = slopeLines(f);
  return [
    `<h4>${h(figuresTitle(report, f))}</h4>`,
    `<p class="note">${h(SPREAD_NOTE)}</p>`,
    phases.head.length > 1 ? `<div class="scroll">${htmlTable(phases)}</div>` : "<p>No phase timed.</p>",
    `<p class="note">memory, medians over the repeats</p>`,
    `<div class="scroll">${htmlTable(memoryTable(f))}</div>`,
    slopes.length
      ? `<p class="note">growth with preserved size</p><ul>${slopes.map((s) => `<li>${h(s)}</li>`).join("")}</ul>`
      : "",
  ].join("\n");
}

function comparisonHtml(c: HandoverComparison): string {
  const table = comparisonTable(c);
  const verdictColumn = table.head.indexOf("verdict");
  const verdictCell = (text: string, col: number) =>
    col === verdictColumn && text in VERDICT_COLOUR
      ? `<span class="verdict" style="background:${VERDICT_COLOUR[text as ComparisonVerdict]}">${h(text)}</span>`
      : h(text);
  return [
    `<h4>${h(comparisonTitle(c))}</h4>`,
    htmlTable(table, verdictCell),
    `<p class="note">${h(comparisonNote(c))}</p>`,
  ].join("\n");
}

/** The page: per arch and shape the two charts (A solid, B dashed), the tables and the verdicts. */
export function renderHandoverHtml(report: HandoverBenchReport): string {
  const title = `KHO handover bench on ${report.host}, ${displayTime(report.startedAt)}`;
  const groups: { arch: string; shape: string; figures: HandoverFigures[] }[] = [];
  for (const f of report.figures) {
    const g = groups.find((x) => x.arch === f.arch && x.shape === f.shape);
    if (g) g.figures.push(f);
    else groups.push({ arch: f.arch, shape: f.shape, figures: [f] });
  }
  const sections = groups.map((g) => {
    const a = g.figures.find((f) => f.kernel === "A");
    const b = g.figures.find((f) => f.kernel === "B");
    const primary = a ?? b ?? g.figures[0];
    if (!primary) return "";
    const compare = a && b ? b : undefined;
    const charts = [
      ["Boot phases", BOOT_CHART_PHASES],
      ["Userspace and the agent", USERSPACE_CHART_PHASES],
    ] as const;
    const chartHtml = charts.map(
      ([name, phases]) =>
        `<h4>${h(name)}</h4><div class="scroll">${handoverChart(primary, { ...(compare ? { compare } : {}), phases })}</div>`,
    );
    const comparisons = report.comparisons.filter((c) => c.arch === g.arch && c.shape === g.shape);
    return [
      `<h3>${h(`${g.arch} ${g.shape}`)}</h3>`,
      compare ? `<p class="note">Kernel A solid, kernel B dashed.</p>` : "",
      ...chartHtml,
      ...g.figures.map((f) => figuresHtml(report, f)),
      ...comparisons.map(comparisonHtml),
    ].join("\n");
  });
  // Comparisons of an arch and shape without figures (not expected, but not lost either).
  const orphans = report.comparisons.filter(
    (c) => !groups.some((g) => g.arch === c.arch && g.shape === c.shape),
  );
  const failures = failureLines(report);
  const kernels = kernelLines(report);
  return [
    ...htmlHead(title, CSS),
    `<h1>${h(title)}</h1>`,
    `<p>${h(handoverCaption(report))}</p>`,
    kernels.length ? `<ul>${kernels.map((k) => `<li>${h(k)}</li>`).join("")}</ul>` : "",
    `<h2>How to read this</h2>`,
    `<p class="reading">${h(READING_NOTE)}</p>`,
    `<p class="note">Each chart shows every phase's median over the repeats against the preserved size; the whisker at each point spans the fastest to the slowest repeat. A verdict compares B with A over every size: <span class="verdict" style="background:${VERDICT_COLOUR.slower}">slower</span> <span class="verdict" style="background:${VERDICT_COLOUR.faster}">faster</span> <span class="verdict" style="background:${VERDICT_COLOUR["no difference"]}">no difference</span>.</p>`,
    `<h2>Figures</h2>`,
    ...sections,
    ...(orphans.length ? ["<h2>Comparisons</h2>", ...orphans.map(comparisonHtml)] : []),
    ...(failures.length
      ? [
          `<h2>Failures (${failures.length})</h2>`,
          `<ul>${failures.map((l) => `<li>${h(l)}</li>`).join("")}</ul>`,
        ]
      : []),
    `<footer>Rendered by <code>kho bench handover</code> (${h(report.schema)}); wall time ${h(seconds(report.wallMs))}.</footer>`,
    "</body>",
    "</html>",
    "",
  ].join("\n");
}
