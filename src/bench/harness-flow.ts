// One harness run of one scenario on one arch, exactly as `kho run --scenario X --arch A`
// does it (runScenarios: kernel lookup, checks, guest image, per-run keys, boot, SSH, the
// scenario, teardown), timed from the outside and broken down with the runner's own phases.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import { runScenarios } from "../orchestrate/runner.js";
import type { Scenario } from "../api/scenario.js";
import type { Logger } from "../util/log.js";
import { guestMarks } from "./console-marks.js";
import type { FlowSample } from "./raw-flow.js";

export interface HarnessFlowOptions {
  readonly arch: ArchName;
  readonly scenario: Scenario;
  /** Extra kernel parameters (experiments). */
  readonly append?: string;
  readonly log: Logger;
  readonly load: () => number;
}

const sum = (r: Readonly<Record<string, number>>) => Object.values(r).reduce((a, b) => a + b, 0);

export async function runHarnessFlow(opts: HarnessFlowOptions): Promise<FlowSample> {
  const load = opts.load();
  const outDir = await mkdtemp(join(tmpdir(), "kho-bench-run-"));
  const scenario: Scenario = opts.append
    ? {
        ...opts.scenario,
        boot: { ...opts.scenario.boot, append: [opts.scenario.boot.append, opts.append].join(" ").trim() },
      }
    : opts.scenario;
  const t0 = performance.now();
  try {
    const report = await runScenarios({
      arches: [opts.arch],
      scenarios: [scenario],
      outDir,
      log: (l) => opts.log(`#   ${l.replace(/^#\s*/, "")}`),
      onResult: () => undefined,
    });
    const totalMs = Math.round(performance.now() - t0);
    const r = report.results[0];
    const setupMs = report.setups[0]?.phaseMs ?? {};
    if (!r)
      return { ok: false, error: "the runner returned no result", phaseMs: {}, totalMs, guestMs: {}, load };
    // Setup (per run: kernel lookup, inspection, guest image, boot files), then the scenario's
    // own phases; what neither names (key generation, dmesg, QEMU stop, cleanup) is "other".
    const phaseMs: Record<string, number> = {
      ...Object.fromEntries(Object.entries(setupMs).map(([k, v]) => [`setup ${k}`, v])),
      ...r.phaseMs,
    };
    phaseMs.other = Math.max(0, totalMs - sum(phaseMs));
    const consoleLog = r.artifactsDir ? join(r.artifactsDir, "console.log") : undefined;
    const text = consoleLog ? await readFile(consoleLog, "utf8").catch(() => "") : "";
    const ok = r.verdict === "pass";
    if (!ok) opts.log(`#   ${scenario.id} ended ${r.verdict}: ${r.reason ?? ""}`);
    return {
      ok,
      ...(ok ? {} : { error: `${r.verdict}: ${r.reason ?? ""}`, evidence: r.evidence ?? [] }),
      phaseMs,
      totalMs,
      guestMs: guestMarks(text.split("\n")),
      load,
    };
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}
