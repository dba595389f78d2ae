// The bench's text report: per arch and flow, p50/p95 of every phase and of the total; then
// the harness's overhead per scenario as a ratio to the raw flow.
import type { BenchReport, FlowFigures } from "./bench.js";
import type { Summary } from "./stats.js";

const sec = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)}s` : "-");
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : "-");

/** Rows as aligned columns: the first left-aligned, the rest right-aligned, two spaces apart. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) =>
    r
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}

function flowRows(f: FlowFigures): string[][] {
  const row = (name: string, s: Summary) => [`  ${name}`, sec(s.p50), sec(s.p95)];
  return [
    [`${f.arch} ${f.flow} (n=${f.total.n}${f.failures ? `, ${f.failures} FAILED` : ""})`, "p50", "p95"],
    ...Object.entries(f.phases).map(([k, s]) => row(k, s)),
    row("total", f.total),
  ];
}

export function formatBench(report: BenchReport): string {
  const out: string[] = [];
  const loads = report.flows.flatMap((f) => f.samples.map((s) => s.load));
  if (loads.length) {
    out.push(
      `${report.cpus} CPUs, 1-minute load average at the samples' start: ${Math.min(...loads).toFixed(1)} to ${Math.max(...loads).toFixed(1)}`,
      "",
    );
  }
  for (const f of report.flows) out.push(...table(flowRows(f)), "");
  const guest = report.flows.filter((f) => Object.keys(f.guest).length);
  if (guest.length) {
    out.push("guest printk time of marker lines (ms since that kernel started), p50:");
    for (const f of guest) {
      const parts = Object.entries(f.guest).map(([k, s]) => `${k} ${Math.round(s.p50)}`);
      out.push(`  ${f.arch} ${f.flow}: ${parts.join(", ")}`);
    }
    out.push("");
  }
  out.push(
    ...table([
      ["overhead (harness total / raw total)", "p50", "p95", "paired p50"],
      ...report.overhead.map((o) => [
        `  ${o.arch} ${o.scenario}`,
        times(o.ratio.p50),
        times(o.ratio.p95),
        times(o.ratio.pairedP50),
      ]),
    ]),
  );
  return out.join("\n");
}
