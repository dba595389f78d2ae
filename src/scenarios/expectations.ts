// What the kernel is expected to get wrong, in one table keyed by kernel capability: while the
// kernel lacks the capability, the scenario's failure is an expected failure (xfail) with the
// reason; if it passes anyway, the result is xpass, reported loudly so the table gets updated.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** Kernel capabilities that are not config options: features a source tree has or lacks. */
export type KernelFeature = "kho-unsplit-pages";

export interface Expectation {
  readonly scenario: string;
  /** The expectation holds while the kernel lacks this feature. */
  readonly unless: KernelFeature;
  readonly reason: string;
  /** Console lines the expected failure prints (not faults for the watchdog). */
  readonly consoleLines: readonly RegExp[];
}

export const EXPECTATIONS: readonly Expectation[] = [
  {
    scenario: "pages-dma-order9",
    unless: "kho-unsplit-pages",
    reason:
      "without the 'preserve unsplit high-order pages' series (seed 000), kho_restore_pages gives every tail page of a non-compound block refcount 1, so freeing it trips Bad page state",
    consoleLines: [
      /Bad page state/,
      /nonzero _refcount/,
      /page dumped because/,
      /Call trace|Hardware name|Tainted/i,
    ],
  },
];

/**
 * Which features a kernel has, read from the source tree it was built from. The unsplit series
 * (seed 000, "kho: Support preserving unsplit high-order pages") declares
 * kho_split_preserved_pages() in include/linux/kexec_handover.h.
 */
export async function kernelFeatures(tree: string): Promise<Set<KernelFeature>> {
  const features = new Set<KernelFeature>();
  const header = await readFile(join(tree, "include/linux/kexec_handover.h"), "utf8").catch(() => "");
  if (header.includes("kho_split_preserved_pages")) features.add("kho-unsplit-pages");
  return features;
}

export function activeExpectation(
  scenarioId: string,
  features: ReadonlySet<KernelFeature>,
): Expectation | undefined {
  return EXPECTATIONS.find((e) => e.scenario === scenarioId && !features.has(e.unless));
}
