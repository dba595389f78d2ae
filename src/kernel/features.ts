// Kernel capabilities that are not config options: features a source tree has or lacks, which
// decide a scenario's expected failure (Scenario.expectation).
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export type KernelFeature =
  /** kho_split_preserved_pages(): the "preserve unsplit high-order pages" series (seed 000). */
  | "kho-unsplit-pages"
  /** A LUO file handler for hugetlbfs files (a hugetlb source file of mm/ registers one). */
  | "luo-hugetlb";

/**
 * Which features a kernel has, read from the source tree it was built from. The unsplit series
 * (seed 000, "kho: Support preserving unsplit high-order pages") declares
 * kho_split_preserved_pages() in include/linux/kexec_handover.h; a hugetlb LUO handler is
 * registered from mm/hugetlb*.c (7.2 has none: memfd_luo takes shmem files only).
 */
export async function kernelFeatures(tree: string): Promise<Set<KernelFeature>> {
  const features = new Set<KernelFeature>();
  const header = await readFile(join(tree, "include/linux/kexec_handover.h"), "utf8").catch(() => "");
  if (header.includes("kho_split_preserved_pages")) features.add("kho-unsplit-pages");
  const mm = await readdir(join(tree, "mm")).catch(() => []);
  for (const file of mm.filter((f) => /hugetlb.*\.c$/.test(f))) {
    const text = await readFile(join(tree, "mm", file), "utf8").catch(() => "");
    if (/liveupdate_register_file_handler|struct liveupdate_file_handler/.test(text))
      features.add("luo-hugetlb");
  }
  return features;
}
