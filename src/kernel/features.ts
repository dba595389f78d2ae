// Kernel capabilities that are not config options: features a source tree has or lacks, which
// decide a scenario's expected failure (Scenario.expectation).
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export type KernelFeature =
  /** kho_split_preserved_pages(): the "preserve unsplit high-order pages" series (seed 000). */
  | "kho-unsplit-pages"
  /** A LUO file handler for hugetlbfs files (a hugetlb source file of mm/ registers one). */
  | "luo-hugetlb"
  /**
   * The damaged-handover checks (`kho corrupt`), each read from the source that would hold it;
   * 7.2 has none of them. A pattern that misses a future kernel's new check only turns that
   * case's expected failure into a loud XPASS, never hides a failure.
   */
  /** kho_mem_retrieve/kho_populate check preserved-memory-map (alignment, RAM) before the walk. */
  | "kho-map-checked"
  /** The radix walk at boot checks each decoded chunk (order, RAM) before reserving it. */
  | "kho-radix-checked"
  /** A LUO state that fails to deserialize at boot disables live update without a panic. */
  | "luo-corrupt-no-panic"
  /** memfd_luo checks a memfd's size against its folios when it is retrieved. */
  | "memfd-size-checked"
  /** memblock's reserve_mem revival checks that the region is memory. */
  | "reserve-mem-checked";

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
  const read = (path: string) => readFile(join(tree, path), "utf8").catch(() => "");
  /** A C function's definition (its name, a parameter list, the body up to a closing brace in column 0). */
  const body = (src: string, name: string) =>
    new RegExp(`\\b${name}\\([^;{)]*\\)\\s*\\{[\\s\\S]*?\\n}`).exec(src)?.[0] ?? "";
  const kho = await read("kernel/liveupdate/kexec_handover.c");
  const retrieve = body(kho, "kho_mem_retrieve");
  if (/PAGE_ALIGNED|IS_ALIGNED|pfn_valid|memblock_is_(?:region_)?memory/.test(retrieve))
    features.add("kho-map-checked");
  const reserve = body(kho, "kho_preserved_memory_reserve");
  if (/MAX_PAGE_ORDER|pfn_valid|memblock_is_(?:region_)?memory|scratch/.test(reserve))
    features.add("kho-radix-checked");
  const luo = await read("kernel/liveupdate/luo_internal.h");
  const restoreFail = /luo_restore_fail[\s\S]{0,400}/.exec(luo)?.[0] ?? "";
  if (luo && !/panic\(/.test(restoreFail)) features.add("luo-corrupt-no-panic");
  const memfd = await read("mm/memfd_luo.c");
  if (/(?:size|i_size)[^;\n]*[<>][^;\n]*nr_folios|nr_folios[^;\n]*[<>][^;\n]*size/.test(memfd))
    features.add("memfd-size-checked");
  const memblock = await read("mm/memblock.c");
  const revive = body(memblock, "reserve_mem_kho_revive");
  if (/memblock_is_(?:region_)?memory|pfn_valid|memblock_overlaps_region/.test(revive))
    features.add("reserve-mem-checked");
  return features;
}
