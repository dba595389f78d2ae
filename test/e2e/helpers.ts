// Shared by the e2e tests: the harness's default kernels, built once (or taken from the cache).
import { type ArchName } from "../../src/arch.js";
import { buildKernel } from "../../src/kernel/build.js";
import type { CachedKernel } from "../../src/kernel/cache.js";
import { debianKernelSource } from "../../src/kernel/source.js";
import { stderrLogger } from "../../src/util/log.js";

const kernels = new Map<ArchName, Promise<CachedKernel>>();

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
