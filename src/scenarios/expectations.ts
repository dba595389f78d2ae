// What the kernel is expected to get wrong, in one table keyed by kernel capability: while the
// kernel lacks the capability, the scenario's failure is an expected failure (xfail) with the
// reason; if it passes anyway, the result is xpass, reported loudly so the table gets updated.
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { KernelUnderTest } from "../run/context.js";

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
 * Which features a kernel has, read from the source tree it was built from: the unsplit
 * series adds `enum kho_page_type` to include/linux/kho_radix_tree.h.
 */
export async function kernelFeatures(kernel: KernelUnderTest): Promise<Set<KernelFeature>> {
  const features = new Set<KernelFeature>();
  const tree = kernel.built?.manifest.sourceTree;
  if (!tree) return features;
  const header = join(tree, "include/linux/kho_radix_tree.h");
  if (
    await access(header).then(
      () => true,
      () => false,
    )
  ) {
    if (/kho_page_type|KHO_PAGE_SPLIT/.test(await readFile(header, "utf8")))
      features.add("kho-unsplit-pages");
  }
  return features;
}

export function activeExpectation(
  scenarioId: string,
  features: ReadonlySet<KernelFeature>,
): Expectation | undefined {
  return EXPECTATIONS.find((e) => e.scenario === scenarioId && !features.has(e.unless));
}
