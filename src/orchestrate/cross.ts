// Cross-version handover: boot the harness's kernel of series A, kexec into series B, and the
// reverse. A pair is ABI-compatible when every chosen scenario passes across it.
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { buildKernel } from "../kernel/build.js";
import { debianKernelSource } from "../kernel/source.js";
import type { Scenario } from "../api/scenario.js";
import type { Logger } from "../util/log.js";
import { runScenarios, type RunReport } from "./runner.js";
import { isSuccess, type ScenarioResult } from "../report/verdict.js";

export interface CrossOptions {
  readonly arches: readonly ArchName[];
  /** Two or more Debian series; every ordered pair of distinct series is run. */
  readonly series: readonly string[];
  readonly scenarios: readonly Scenario[];
  readonly outDir: string;
  readonly log: Logger;
  readonly jobs?: number;
  /** Use cached kernels only (KernelNotCached instead of a 30-minute build). */
  readonly cachedOnly?: boolean;
  readonly onResult: (r: ScenarioResult) => void;
}

export interface PairVerdict {
  readonly arch: ArchName;
  readonly from: string;
  readonly to: string;
  /** unproven: nothing failed, but a scenario was skipped (the pair was not fully exercised). */
  readonly abi: "compatible" | "incompatible" | "unproven";
  /** The first result that was not a pass or xfail. */
  readonly firstFailure?: { readonly id: string; readonly reason: string };
}

export interface CrossReport extends RunReport {
  readonly pairs: PairVerdict[];
}

/** Ordered pairs of distinct series: A→B and B→A for every two. */
export function seriesPairs(series: readonly string[]): [string, string][] {
  const unique = [...new Set(series)];
  if (unique.length < 2) throw new HarnessError("give at least two different series, e.g. --series 7.2,7.3");
  return unique.flatMap((a) => unique.filter((b) => b !== a).map((b): [string, string] => [a, b]));
}

/** Results of one pair carry the pair in their id: `memfd-basic[7.2->7.3]`. */
export function pairId(id: string, from: string, to: string): string {
  return `${id}[${from}->${to}]`;
}

export function judgePair(
  arch: ArchName,
  from: string,
  to: string,
  results: readonly ScenarioResult[],
): PairVerdict {
  const failed = results.find((r) => !isSuccess(r.verdict));
  const skipped = results.find((r) => r.verdict === "skip");
  const bad = failed ?? skipped;
  return {
    arch,
    from,
    to,
    abi: failed ? "incompatible" : skipped || results.length === 0 ? "unproven" : "compatible",
    ...(bad ? { firstFailure: { id: bad.id, reason: `${bad.verdict}: ${bad.reason ?? ""}` } } : {}),
  };
}

export async function runCross(opts: CrossOptions): Promise<CrossReport> {
  const pairs = seriesPairs(opts.series);
  const report: CrossReport = { results: [], setups: [], setupFailures: [], pairs: [] };
  for (const arch of opts.arches) {
    // Build (or find) every series' kernel first: a missing one fails here, before any guest.
    const images = new Map<string, string>();
    for (const series of new Set(opts.series)) {
      const source = await debianKernelSource(series, opts.log);
      const { kernel } = await buildKernel({
        arch,
        source,
        userFragments: [],
        log: opts.log,
        ...(opts.cachedOnly ? { cachedOnly: true } : {}),
      });
      images.set(series, kernel.imagePath);
    }
    for (const [from, to] of pairs) {
      opts.log(`# ${arch}: boot ${from}, kexec into ${to}`);
      const run = await runScenarios({
        arches: [arch],
        series: from,
        nextKernel: images.get(to) ?? "",
        scenarios: opts.scenarios,
        outDir: join(opts.outDir, `${from}-to-${to}`),
        log: opts.log,
        ...(opts.jobs ? { jobs: opts.jobs } : {}),
        onResult: (r) => opts.onResult({ ...r, id: pairId(r.id, from, to) }),
      });
      const results = run.results.map((r) => ({ ...r, id: pairId(r.id, from, to) }));
      report.results.push(...results);
      report.setups.push(...run.setups);
      report.pairs.push(judgePair(arch, from, to, results));
    }
  }
  return report;
}

/** The compatibility table: one line per arch and pair. */
export function pairTable(pairs: readonly PairVerdict[]): string {
  const rows = pairs.map((p) => [
    p.arch,
    `${p.from} -> ${p.to}`,
    p.abi === "incompatible" ? "INCOMPATIBLE" : p.abi,
    p.firstFailure ? `${p.firstFailure.id}: ${p.firstFailure.reason}` : "",
  ]);
  const header = ["arch", "handover", "ABI", "first failure"];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (i < 3 ? (r[i] ?? "").length : 0))),
  );
  return [header, ...rows]
    .map((cells) =>
      cells
        .map((c, i) => (i < 3 ? c.padEnd(widths[i] ?? 0) : c))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
