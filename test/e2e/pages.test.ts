// Issue "The scenarios kernel developers need": kernel allocations preserved through the test
// module (folios up to 1 GiB, split pages, DMA-style unsplit blocks with the seed-000 refcount
// bug as an expected failure) and a chain of kexecs, on real guests of both arches.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES } from "../../src/arch.js";
import { explain, HOUR, runSelected } from "./helpers.js";

describe.each(ARCH_NAMES)("kernel pages and chains on %s", (arch) => {
  it(
    "folios and split pages come back whole; DMA-style blocks are the known XFAIL",
    { timeout: HOUR },
    async () => {
      const results = await runSelected(arch, "pages-*", { jobs: 2 });
      const byId = new Map(results.map((r) => [r.id, r]));
      for (const id of [
        "pages-folio-order0",
        "pages-folio-order9",
        "pages-folio-order18",
        "pages-split-order9",
      ]) {
        const r = byId.get(id);
        expect(r?.verdict, r && explain(r)).toBe("pass");
      }
      expect(byId.get("pages-folio-order9")?.reason).toMatch(/tails \{"0":511\}, compound true, pattern ok/);
      expect(byId.get("pages-split-order9")?.reason).toMatch(/tails \{"1":511\}/);

      // 7.2 lacks the unsplit-pages series: every tail comes back with refcount 1 and freeing the
      // block trips DEBUG_VM. The evidence must show both, not just the verdict.
      const dma = byId.get("pages-dma-order9");
      expect(dma?.verdict, dma && explain(dma)).toBe("xfail");
      expect(dma?.reason).toMatch(/seed 000/);
      expect(dma?.evidence?.join("\n")).toMatch(/tails \{"1":511\}/);
      expect(dma?.evidence?.join("\n")).toMatch(/Bad page state/);
      const report = JSON.parse(
        await readFile(join(dma?.artifactsDir ?? "", "kmod-report.json"), "utf8"),
      ) as {
        entries: { head_ref: number; as_expected: boolean }[];
      };
      expect(report.entries.map((e) => [e.head_ref, e.as_expected])).toEqual([
        [1, false],
        [1, false],
      ]);
    },
  );

  it(
    "chain-memfd: three kexecs, exec count 1, 2, 3, same bytes on the same frames",
    { timeout: HOUR },
    async () => {
      const [r] = await runSelected(arch, "chain-memfd");
      expect(r?.verdict, r && explain(r)).toBe("pass");
      expect(r?.reason).toMatch(/hop 1: count 1.*hop 2: count 2.*hop 3: count 3/);
    },
  );
});
