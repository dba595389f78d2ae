// Kernel capabilities read from a source tree: the ones that decide expected failures. Each is
// checked on a tree without it (as 7.2 is) and with it.
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { kernelFeatures } from "../../src/kernel/features.js";

async function tree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "kho-features-"));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

/** The 7.2 shapes of the functions the damaged-handover features look in. */
const V72 = {
  "kernel/liveupdate/kexec_handover.c": `
/*
 * kho_preserved_memory_reserve() marks the reservation as noinit (a mention before the
 * definition, and a function with a check in between: neither is the reserve path)
 */
static struct page *__init kho_get_preserved_page(phys_addr_t phys, unsigned int order)
{
\tif (!pfn_valid(PHYS_PFN(phys))) return NULL;
\treturn pfn_to_page(PHYS_PFN(phys));
}
static int __init kho_preserved_memory_reserve(phys_addr_t phys, unsigned int order)
{
\tstruct page *page = kho_get_preserved_page(phys, order);
\tmemblock_reserve(phys, PAGE_SIZE << order);
\treturn 0;
}
static int __init kho_mem_retrieve(const void *fdt)
{
\tconst u64 *mem = fdt_getprop(fdt, 0, "preserved-memory-map", &len);
\ttree.root = phys_to_virt(*mem);
\treturn kho_radix_walk_tree(&tree, kho_preserved_memory_reserve);
}
`,
  "kernel/liveupdate/luo_internal.h": "#define luo_restore_fail(__fmt, ...) panic(__fmt, ##__VA_ARGS__)\n",
  "mm/memfd_luo.c": "\ti_size_write(inode, ser->size);\n\tfor (i = 0; i < ser->nr_folios; i++) {}\n",
  "mm/memblock.c": `
static bool __init reserve_mem_kho_revive(const char *name, phys_addr_t size, phys_addr_t align)
{
\treserved_mem_add(*p_start, size, name);
\treturn true;
}
`,
};

describe("kernel features read from the source", () => {
  it("7.2's shapes have none of the damaged-handover checks", async () => {
    expect([...(await kernelFeatures(await tree(V72)))]).toEqual([]);
  });

  it("each check is found where it would be added", async () => {
    const withChecks = {
      "kernel/liveupdate/kexec_handover.c": V72["kernel/liveupdate/kexec_handover.c"]
        .replace("\tstruct page *page", "\tif (order > MAX_PAGE_ORDER) return -EINVAL;\n\tstruct page *page")
        .replace("\ttree.root =", "\tif (!PAGE_ALIGNED(*mem)) return -EINVAL;\n\ttree.root ="),
      "kernel/liveupdate/luo_internal.h":
        "#define luo_restore_fail(__fmt, ...) pr_err(__fmt, ##__VA_ARGS__)\n",
      "mm/memfd_luo.c": "\tif (ser->size > ser->nr_folios * PAGE_SIZE) return -EINVAL;\n",
      "mm/memblock.c": V72["mm/memblock.c"].replace(
        "\treserved_mem_add",
        "\tif (!memblock_is_region_memory(*p_start, size)) return false;\n\treserved_mem_add",
      ),
    };
    expect([...(await kernelFeatures(await tree(withChecks)))].sort()).toEqual([
      "kho-map-checked",
      "kho-radix-checked",
      "luo-corrupt-no-panic",
      "memfd-size-checked",
      "reserve-mem-checked",
    ]);
  });
});
