// Kernel capabilities that are not config options: features a source tree has or lacks, which
// decide a scenario's expected failure (Scenario.expectation).
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export type KernelFeature = "kho-unsplit-pages";

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
