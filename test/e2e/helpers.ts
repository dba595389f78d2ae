// Shared by the e2e tests: the harness's default kernels, built once (or taken from the cache).
import { mkdir, mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ArchName } from "../../src/arch.js";
import { buildKernel } from "../../src/kernel/build.js";
import type { CachedKernel } from "../../src/kernel/cache.js";
import { debianKernelSource } from "../../src/kernel/source.js";
import { runScenarios, type RunOptions } from "../../src/orchestrate/runner.js";
import type { ScenarioResult } from "../../src/report/verdict.js";
import { selectScenarios } from "../../src/scenarios/index.js";
import { stderrLogger } from "../../src/util/log.js";

const kernels = new Map<ArchName, Promise<CachedKernel>>();

/** Where the e2e runs keep their artifacts: out/e2e/ in the checkout, next to the test reports. */
const E2E_ARTIFACTS = fileURLToPath(new URL("../../out/e2e/", import.meta.url));

/** A fresh artifacts folder for one e2e run (kept after the tests, for a failure's evidence). */
export async function e2eOutDir(prefix: string): Promise<string> {
  await mkdir(E2E_ARTIFACTS, { recursive: true });
  return mkdtemp(join(E2E_ARTIFACTS, prefix));
}

/** The default kernel for an arch, as `kho kernel build` makes it. */
export function defaultKernel(arch: ArchName): Promise<CachedKernel> {
  let k = kernels.get(arch);
  if (!k) {
    k = debianKernelSource(undefined, stderrLogger).then(
      async (source) => (await buildKernel({ arch, source, userFragments: [], log: stderrLogger })).kernel,
    );
    kernels.set(arch, k);
  }
  return k;
}

export const HOUR = 3600_000;

/** Runs the scenarios matching `patterns` on the default kernel of `arch`; results in suite order. */
export async function runSelected(
  arch: ArchName,
  patterns: string,
  extra: Pick<RunOptions, "jobs" | "repeat"> = {},
): Promise<ScenarioResult[]> {
  await defaultKernel(arch);
  const outDir = await e2eOutDir(`${arch}-`);
  const { results } = await runScenarios({
    arches: [arch],
    scenarios: selectScenarios(patterns),
    outDir,
    log: stderrLogger,
    onResult: () => undefined,
    ...extra,
  });
  return results;
}

/** A result's reason and evidence, as an assertion message. */
export const explain = (r: ScenarioResult): string => [r.reason ?? "", ...(r.evidence ?? [])].join("\n");
