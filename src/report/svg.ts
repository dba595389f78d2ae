// The timing chart of the summary page: one stacked horizontal bar per scenario and arch, one
// colour per phase, a legend and an axis in seconds. Plain SVG text, no script, no fonts.
import type { Verdict } from "./verdict.js";
import { escapeXml, OTHER_PHASE, seconds } from "./format.js";

export interface TimingRow {
  readonly label: string;
  readonly verdict: Verdict;
  /** Phases in the order they ran, in ms. */
  readonly segments: readonly (readonly [string, number])[];
}

/** Fixed colours for the phases the scenarios use, so a phase looks the same in every run. */
const PHASE_COLOURS: Readonly<Record<string, string>> = {
  boot: "#4e79a7",
  build: "#9c755f",
  preserve: "#edc948",
  dump: "#b07aa1",
  "kexec load": "#f28e2b",
  kexec: "#e15759",
  restore: "#76b7b2",
  checks: "#59a14f",
  stage1: "#86bcb6",
  stage2: "#8cd17d",
  [OTHER_PHASE]: "#bab0ac",
};
const SPARE_COLOURS = ["#ff9da7", "#499894", "#d37295", "#a0cbe8", "#ffbe7d", "#d4a6c8", "#79706e"];

export const VERDICT_COLOURS: Readonly<Record<Verdict, string>> = {
  pass: "#2e7d32",
  fail: "#c62828",
  xfail: "#8d6e00",
  xpass: "#ad1457",
  skip: "#616161",
  error: "#6a1b9a",
  notrun: "#9e9e9e",
};

/** Every phase in the rows, in first-seen order, "other" last, each with its colour. */
export function phaseLegend(rows: readonly TimingRow[]): [string, string][] {
  const names: string[] = [];
  for (const r of rows) for (const [name] of r.segments) if (!names.includes(name)) names.push(name);
  const ordered = [...names.filter((n) => n !== OTHER_PHASE), ...names.filter((n) => n === OTHER_PHASE)];
  let spare = 0;
  return ordered.map((n) => [n, PHASE_COLOURS[n] ?? SPARE_COLOURS[spare++ % SPARE_COLOURS.length] ?? "#999"]);
}

/** A tick step of 1, 2 or 5 times a power of ten giving about `target` ticks. */
export function niceStep(maxSeconds: number, target = 6): number {
  const raw = Math.max(maxSeconds, 1e-3) / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  return step < 1 && maxSeconds >= 1 ? 1 : step;
}

/** The charts' font attributes. */
export const FONT = 'font-family="system-ui, sans-serif" font-size="11"';
const ROW_H = 22;
const BAR_H = 14;
/** About the width of one character of FONT, for laying out labels. */
export const CHAR_W = 6.4;

/** A coordinate with one decimal at most. */
export const fmt = (n: number) => String(Math.round(n * 10) / 10);

/** A chart legend entry: a line sample (dashed or not) and its name. */
export interface LegendLine {
  readonly name: string;
  readonly colour: string;
  readonly dashed?: boolean;
}

/**
 * Legend entries flowing left to right from `left`, wrapping at `width`, the first row at `y`;
 * returns the SVG groups and the last row's y.
 */
export function lineLegend(
  entries: readonly LegendLine[],
  left: number,
  width: number,
  y: number,
): { readonly svg: string[]; readonly lastY: number } {
  const svg: string[] = [];
  let lx = left;
  let ly = y;
  for (const e of entries) {
    const w = 26 + e.name.length * CHAR_W + 14;
    if (lx > left && lx + w > width) [lx, ly] = [left, ly + 18];
    svg.push(
      `<g transform="translate(${fmt(lx)},${ly})"><line x1="0" y1="6" x2="20" y2="6" stroke="${e.colour}" stroke-width="2.5"${e.dashed ? ' stroke-dasharray="5 3"' : ""}/>` +
        `<text x="25" y="10">${escapeXml(e.name)}</text></g>`,
    );
    lx += w;
  }
  return { svg, lastY: ly };
}

/** The chart as a standalone SVG element (also valid inline in HTML). */
export function timingChart(rows: readonly TimingRow[], width = 820): string {
  const legend = phaseLegend(rows);
  const colour = new Map(legend);
  const labelW = Math.min(320, Math.max(80, ...rows.map((r) => r.label.length * CHAR_W + 12)));
  const right = 56;
  const plotW = Math.max(120, width - labelW - right);
  // Legend items flow left to right and wrap.
  const legendItems: string[] = [];
  let lx = labelW;
  let ly = 0;
  for (const [name, fill] of legend) {
    const w = 18 + name.length * CHAR_W + 14;
    if (lx > labelW && lx + w > width) [lx, ly] = [labelW, ly + 18];
    legendItems.push(
      `<g transform="translate(${fmt(lx)},${ly})"><rect width="12" height="12" fill="${fill}"/>` +
        `<text x="17" y="10">${escapeXml(name)}</text></g>`,
    );
    lx += w;
  }
  const top = ly + 28;
  const maxMs = Math.max(0, ...rows.map((r) => r.segments.reduce((a, [, ms]) => a + ms, 0)));
  const step = niceStep(maxMs / 1000);
  const axisMax = Math.max(step, Math.ceil(maxMs / 1000 / step) * step);
  const x = (s: number) => labelW + (s / axisMax) * plotW;
  const plotH = rows.length * ROW_H;
  const height = top + plotH + 36;

  const grid: string[] = [];
  for (let i = 0; i * step <= axisMax + 1e-9; i++) {
    const s = i * step;
    const gx = fmt(x(s));
    const label = step < 1 ? s.toFixed(Math.ceil(-Math.log10(step))) : String(Math.round(s));
    grid.push(
      `<line x1="${gx}" y1="${top}" x2="${gx}" y2="${top + plotH + 4}" stroke="#ddd"/>`,
      `<text x="${gx}" y="${top + plotH + 16}" text-anchor="middle">${label}</text>`,
    );
  }

  const bars = rows.map((r, i) => {
    const y = top + i * ROW_H;
    const by = y + (ROW_H - BAR_H) / 2;
    const parts = [
      `<text x="${fmt(labelW - 8)}" y="${y + 15}" text-anchor="end">${escapeXml(r.label)}</text>`,
    ];
    let t = 0;
    for (const [name, ms] of r.segments) {
      const x0 = x(t / 1000);
      t += ms;
      parts.push(
        `<rect x="${fmt(x0)}" y="${by}" width="${fmt(Math.max(0.5, x(t / 1000) - x0))}" height="${BAR_H}" fill="${colour.get(name) ?? "#999"}"><title>${escapeXml(`${r.label}: ${name} ${seconds(ms)}`)}</title></rect>`,
      );
    }
    const endX = fmt(x(t / 1000) + 6);
    parts.push(
      t > 0
        ? `<text x="${endX}" y="${y + 15}" fill="${VERDICT_COLOURS[r.verdict]}" font-weight="bold">${r.verdict.toUpperCase()}</text>`
        : `<text x="${endX}" y="${y + 15}" fill="${VERDICT_COLOURS[r.verdict]}">${r.verdict.toUpperCase()} (not timed)</text>`,
    );
    return `<g>${parts.join("")}</g>`;
  });

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="time per phase of each scenario, in seconds" ${FONT}>`,
    `<title>Time per phase of each scenario (seconds)</title>`,
    `<g fill="#333">${legendItems.join("")}</g>`,
    `<g fill="#555">${grid.join("")}</g>`,
    `<line x1="${labelW}" y1="${top + plotH}" x2="${fmt(labelW + plotW)}" y2="${top + plotH}" stroke="#888"/>`,
    `<text x="${fmt(labelW + plotW / 2)}" y="${top + plotH + 31}" text-anchor="middle" fill="#555">seconds</text>`,
    `<g fill="#222">${bars.join("")}</g>`,
    "</svg>",
  ].join("\n");
}
