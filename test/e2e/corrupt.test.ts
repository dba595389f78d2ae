// Issue 18 on real guests of both arches, through `kho corrupt`: one case of each kind of answer
// the 7.2 kernel gives. The no-op write gives what the unmutated handover gives (the write path
// changes nothing); a wrong root compatible is refused with KHO's own line; a LUO state that does
// not deserialize panics the kernel (an expected failure, keyed by luo-corrupt-no-panic); a memfd
// size past its folios is used without a word (expected, memfd-size-checked); a wild radix root
// oopses the kernel in early boot, seen through the early console (expected, kho-map-checked).
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES } from "../../src/arch.js";
import { loadReport } from "../../src/report/schema.js";
import { defaultKernel, e2eOutDir, explain, HOUR } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

describe.each(ARCH_NAMES)("damaged handovers on %s", (arch) => {
  it(
    "each case gets its verdict: refused, used, oops or panic, never a harness error",
    { timeout: HOUR },
    async () => {
      await defaultKernel(arch);
      const out = await e2eOutDir(`corrupt-${arch}-`);
      const cases = "noop,fdt-compatible-old,luo-compatible,luo-memfd-size,fdt-map-outside-ram";
      const run = await execa(
        "node",
        [join(ROOT, "bin/kho"), "corrupt", "--arch", arch, "--case", cases, "--jobs", "1", "--out", out],
        { cwd: ROOT, reject: false, all: true },
      );
      const { doc } = await loadReport(out);
      const got = Object.fromEntries(
        doc.results.map((r) => {
          const f = r.facts?.find((x) => x.kind === "corruption");
          return [r.id, `${f && f.kind === "corruption" ? f.outcome : "?"} ${r.verdict}`];
        }),
      );
      expect(got, run.all).toEqual({
        "corrupt-noop": "accepted pass",
        "corrupt-fdt-compatible-old": "refused pass",
        "corrupt-luo-compatible": "panic xfail",
        "corrupt-luo-memfd-size": "accepted xfail",
        "corrupt-fdt-map-outside-ram": "oops xfail",
      });
      expect(run.exitCode, run.all).toBe(0);
      const byId = (id: string) => {
        const r = doc.results.find((x) => x.id === id);
        if (!r) throw new Error(`no ${id}`);
        return r;
      };
      // the evidence is the kernel's own: KHO's refusal, LUO's panic, the fault in early boot
      const refused = byId("corrupt-fdt-compatible-old");
      expect(refused.reason, explain(refused)).toMatch(
        /KHO: setup: handover FDT \(0x[0-9a-f]+\) is incompatible with 'kho-v4'/,
      );
      expect(explain(byId("corrupt-luo-compatible"))).toMatch(
        /luo: LUO state is incompatible with 'luo-v5'|The incoming tree failed to initialize properly/,
      );
      expect(explain(byId("corrupt-fdt-map-outside-ram"))).toMatch(
        /kho_memory_init|__kho_radix_walk_tree|__init_page_from_nid|__init_single_page/,
      );
      const sized = byId("corrupt-luo-memfd-size");
      expect(explain(sized)).toMatch(/memfd session restored: size 272629760 \(preserved 4194304\)/);
      // what was written is recorded, bytes before and after
      const writes = byId("corrupt-fdt-compatible-old").facts?.find((f) => f.kind === "corruption");
      expect(writes && writes.kind === "corruption" ? writes.writes : []).toEqual([
        expect.objectContaining({
          what: "root FDT compatible kho-v4 -> kho-v3",
          before: "6b686f2d763400",
          after: "6b686f2d763300",
        }),
      ]);
      expect(run.all).toMatch(/what the next kernel did with each damaged handover:/);
    },
  );
});
