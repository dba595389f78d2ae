// Issue 22 on real guests of both arches, through `kho bench handover`: the same kernel against
// itself finds no difference on any phase (and the memory side decodes: the tree marks the
// memfd's pages, LUO's state grows with it, the next kernel reserves what was preserved until
// the restore hands it back); the same kernel booted with memblock=debug (a line per
// memblock_reserve, one per preserved folio in kho_memory_init) is found slower at mm-init.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES } from "../../src/arch.js";
import type { HandoverBenchReport } from "../../src/bench/handover-types.js";
import { defaultKernel, e2eOutDir, HOUR } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MiB = 1024 * 1024;

async function bench(
  args: readonly string[],
): Promise<{ report: HandoverBenchReport; out: string; all: string; code: number }> {
  for (const arch of ARCH_NAMES) await defaultKernel(arch);
  const out = await e2eOutDir("bench-handover-");
  const run = await execa("node", [join(ROOT, "bin/kho"), "bench", "handover", ...args, "--out", out], {
    cwd: ROOT,
    reject: false,
    all: true,
  });
  const text = await readFile(join(out, "bench-handover.json"), "utf8").catch(() => "{}");
  return {
    report: JSON.parse(text) as HandoverBenchReport,
    out,
    all: run.all ?? "",
    code: run.exitCode ?? -1,
  };
}

describe("kho bench handover", () => {
  it(
    "the same kernel against itself: no difference on any phase; the memory side decodes",
    { timeout: HOUR },
    async () => {
      // 8 repeats, not 4: in a CI run with 4, a burst of host load slowed two A runs in a row
      // (the end of one repeat and the start of the next, A B B A order) by a third, and x86_64's
      // blackout came out "faster", 0.89 (0.76-0.98, p 0.0013). With 8 a side, two slowed
      // samples barely move a median or the rank test. With 8, another CI run still found arm64's
      // userspace 1.23 (1.05-1.43): hence the default ratio floor of 0.25 (README, "A/B").
      const repeats = 8;
      const { report, out, all, code } = await bench([
        "--sizes",
        "0,64M",
        "--repeat",
        String(repeats),
        "--compare-kernel",
        "default",
      ]);
      expect(code, all).toBe(0);
      expect(report.failures, all).toEqual([]);
      // 2 arches x 2 sizes x the repeats x 2 kernels, one kexec each
      expect(report.samples).toHaveLength(ARCH_NAMES.length * 2 * repeats * 2);
      for (const arch of ARCH_NAMES) {
        const c = report.comparisons.find((x) => x.arch === arch);
        expect(c?.phases.map((p) => p.phase)).toEqual(
          expect.arrayContaining([
            "shutdown",
            "purgatory",
            "early-boot",
            "mm-init",
            "kernel-init",
            "userspace",
            "luo-retrieve",
            "readback",
          ]),
        );
        for (const p of c?.phases ?? [])
          expect(`${arch} ${p.phase} ${p.verdict}`, all).toBe(`${arch} ${p.phase} no difference`);

        const f = report.figures.find((x) => x.arch === arch && x.kernel === "A");
        expect(f?.sizes).toEqual([0, 64 * MiB]);
        const [none, some] = f?.memory ?? [];
        // the tree marks every page of the 64 MiB memfd (and LUO's own), in pages of its own
        expect((some?.preservedPages ?? 0) - (none?.preservedPages ?? 0)).toBeGreaterThanOrEqual(
          (64 * MiB) / 4096,
        );
        expect(some?.radixPages).toBeGreaterThan(0);
        // the memfd's folio array alone is 16384 x 16 bytes: 64 pages
        expect(some?.luoPages).toBeGreaterThanOrEqual(64);
        expect(some?.scratchBytes).toBeGreaterThan(0);
        // the next kernel boots with the preserved pages reserved, and has them all back after the restore
        expect((some?.reservedKiBAfter ?? 0) - (none?.reservedKiBAfter ?? 0)).toBeGreaterThanOrEqual(
          64 * 1024,
        );
        // MemTotal has the 64 MiB back: the restore returns preserved pages to the allocator. x86
        // boots a page short now and then at any size (1012240 vs 1012244 KiB, about 1 boot in 16
        // in CI), and a median of 4 can land between: allow a few pages, not 64 MiB.
        expect(Math.abs((some?.memTotalKiBAfter ?? 0) - (none?.memTotalKiBAfter ?? 0))).toBeLessThanOrEqual(
          16,
        );
        expect(some?.memTotalKiBAfter).toBeGreaterThan(512 * 1024);
        // KHO's restore walks and reserves every preserved folio: mm-init grows with the size
        expect(f?.slopes.find((s) => s.phase === "mm-init")?.msPerGiB).toBeGreaterThan(0);
        await stat(join(out, `chart-${arch}-memfd.svg`));
      }
      const html = await readFile(join(out, "summary.html"), "utf8");
      expect(html).toContain("handover phases vs preserved size");
    },
  );

  it(
    "memblock=debug on kernel B: slower at mm-init, where KHO reserves every preserved folio",
    { timeout: HOUR },
    async () => {
      const { report, all, code } = await bench([
        "--sizes",
        "0,16M",
        "--repeat",
        "4",
        "--compare-append",
        "memblock=debug",
      ]);
      expect(code, all).toBe(0);
      expect(report.kernels.map((k) => k.append ?? "")).toEqual(["", "memblock=debug"]);
      for (const arch of ARCH_NAMES) {
        const c = report.comparisons.find((x) => x.arch === arch);
        const verdict = (phase: string) => c?.phases.find((p) => p.phase === phase);
        expect(verdict("mm-init")?.verdict, all).toBe("slower");
        expect(verdict("mm-init")?.lo, all).toBeGreaterThan(2);
        // Controls: the initcalls and userspace (1.2 s and 0.3 s under TCG) run after memblock
        // has done its work, so they must not be called slower. Not purgatory: on arm64 it
        // also holds the new kernel's start up to its early console, 70-110 ms in all, and one
        // CI run found B 30 ms slower there on nearly every sample (1.42x, p 0.0025) where a
        // quiet host found 0.97x; the cause is not known, so it is no control.
        for (const control of ["kernel-init", "userspace"])
          expect(verdict(control)?.verdict, `${arch} ${control}\n${all}`).toBe("no difference");
      }
    },
  );
});
