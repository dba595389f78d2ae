// `npm run bench`: the kernel's KHO selftest flow (vmtest.sh, raw) against the harness's own
// scenarios, on the same kernel, QEMU machine and accelerator, repeated and interleaved
// (raw, then each scenario, per repeat) so that load from other guests hits every flow alike.
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, hostname, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import { chooseAccel } from "../host/kvm.js";
import { buildKernel } from "../kernel/build.js";
import { debianKernelSource } from "../kernel/source.js";
import type { Scenario } from "../api/scenario.js";
import { formatDuration, type Logger } from "../util/log.js";
import { runHarnessFlow } from "./harness-flow.js";
import { runRawFlow, type FlowSample } from "./raw-flow.js";
import { overhead, summarize, summarizePhases, type Overhead, type Summary } from "./stats.js";

export const BENCH_SCHEMA = "kho-harness/bench@1";
export const RAW_FLOW = "raw (vmtest.sh)";

export interface BenchOptions {
  readonly arches: readonly ArchName[];
  readonly scenarios: readonly Scenario[];
  readonly repeat: number;
  /** Extra kernel parameters for every flow (experiments such as `quiet`). */
  readonly append?: string;
  readonly log: Logger;
}

export interface FlowFigures {
  readonly arch: ArchName;
  readonly flow: string;
  readonly samples: readonly FlowSample[];
  /** Over the successful samples only. */
  readonly phases: Record<string, Summary>;
  readonly total: Summary;
  readonly guest: Record<string, Summary>;
  readonly failures: number;
}

export interface OverheadFigures {
  readonly arch: ArchName;
  readonly scenario: string;
  readonly ratio: Overhead;
}

export interface BenchReport {
  readonly schema: typeof BENCH_SCHEMA;
  readonly host: string;
  readonly cpus: number;
  readonly startedAt: string;
  readonly wallMs: number;
  readonly repeat: number;
  readonly append?: string;
  readonly setup: { arch: ArchName; accel: string; kernel: string; release: string }[];
  readonly flows: FlowFigures[];
  readonly overhead: OverheadFigures[];
}

function figures(arch: ArchName, flow: string, samples: readonly FlowSample[]): FlowFigures {
  const ok = samples.filter((s) => s.ok);
  return {
    arch,
    flow,
    samples,
    phases: summarizePhases(ok.map((s) => s.phaseMs)),
    total: summarize(ok.map((s) => s.totalMs)),
    guest: summarizePhases(ok.map((s) => s.guestMs)),
    failures: samples.length - ok.length,
  };
}

export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const load = () => loadavg()[0] ?? 0;
  const flows: FlowFigures[] = [];
  const ratios: OverheadFigures[] = [];
  const setup: BenchReport["setup"] = [];
  for (const arch of opts.arches) {
    // The harness's kernel, from the cache (built when missing), as `kho run` gets it.
    const source = await debianKernelSource(undefined, opts.log);
    const { kernel } = await buildKernel({ arch, source, userFragments: [], log: opts.log });
    const { accel } = await chooseAccel(arch, opts.log);
    setup.push({ arch, accel, kernel: kernel.imagePath, release: kernel.manifest.kernelRelease });
    const raw: FlowSample[] = [];
    const harness = new Map<string, FlowSample[]>(opts.scenarios.map((s) => [s.id, []]));
    const work = await mkdtemp(join(tmpdir(), `kho-bench-${arch}-`));
    try {
      for (let i = 1; i <= opts.repeat; i++) {
        const dir = await mkdtemp(join(work, `raw-${i}-`));
        const r = await runRawFlow({
          arch,
          kernel,
          accel,
          workDir: dir,
          log: opts.log,
          load,
          ...(opts.append ? { append: opts.append } : {}),
        });
        await rm(dir, { recursive: true, force: true });
        raw.push(r);
        opts.log(`# bench ${arch} ${i}/${opts.repeat} ${RAW_FLOW}: ${describe(r)}`);
        for (const scenario of opts.scenarios) {
          const h = await runHarnessFlow({
            arch,
            scenario,
            log: opts.log,
            load,
            ...(opts.append ? { append: opts.append } : {}),
          });
          harness.get(scenario.id)?.push(h);
          opts.log(`# bench ${arch} ${i}/${opts.repeat} ${scenario.id}: ${describe(h)}`);
        }
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    const rawOk = raw.filter((s) => s.ok).map((s) => s.totalMs);
    flows.push(figures(arch, RAW_FLOW, raw));
    for (const [id, samples] of harness) {
      flows.push(figures(arch, id, samples));
      // Paired by repeat only when both runs of that repeat succeeded.
      const pairs = samples.flatMap((h, i): [number, number][] => {
        const r = raw[i];
        return h.ok && r?.ok ? [[h.totalMs, r.totalMs]] : [];
      });
      const okTotals = samples.filter((s) => s.ok).map((s) => s.totalMs);
      ratios.push({ arch, scenario: id, ratio: overhead(okTotals, rawOk, pairs) });
    }
  }
  return {
    schema: BENCH_SCHEMA,
    host: hostname(),
    cpus: cpus().length,
    startedAt,
    wallMs: Math.round(performance.now() - started),
    repeat: opts.repeat,
    ...(opts.append ? { append: opts.append } : {}),
    setup,
    flows,
    overhead: ratios,
  };
}

function describe(s: FlowSample): string {
  const phases = Object.entries(s.phaseMs)
    .map(([k, v]) => `${k} ${formatDuration(v)}`)
    .join(", ");
  return `${s.ok ? "ok" : `FAILED (${s.error ?? "?"})`} ${formatDuration(s.totalMs)} [${phases}] load ${s.load.toFixed(1)}`;
}

export function benchFailed(report: BenchReport): boolean {
  return report.flows.some((f) => f.failures > 0 || f.total.n === 0);
}
