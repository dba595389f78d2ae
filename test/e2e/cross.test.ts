// Issue "scenarios kernel developers need", cross-version handover: 7.2 -> 7.3 and back on arm64.
// The 7.3 kernel is a second full build (about 30 minutes on 2 cores): the test uses it when the
// cache has it (`kho kernel build --arch arm64 --series 7.3`) and says why it skips otherwise.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { KernelNotCached } from "../../src/kernel/build.js";
import { runCross, type CrossReport } from "../../src/orchestrate/cross.js";
import { selectScenarios } from "../../src/scenarios/index.js";
import { stderrLogger } from "../../src/util/log.js";
import { e2eOutDir, explain, HOUR } from "./helpers.js";

describe("cross-version handover on arm64", () => {
  it(
    "7.2 -> 7.3 and 7.3 -> 7.2: test-kho and memfd-basic give an ABI verdict per pair",
    { timeout: HOUR },
    async (ctx) => {
      let report: CrossReport;
      try {
        report = await runCross({
          arches: ["arm64"],
          series: ["7.2", "7.3"],
          scenarios: selectScenarios("test-kho,memfd-basic"),
          outDir: await e2eOutDir("cross-"),
          log: stderrLogger,
          cachedOnly: true,
          onResult: () => undefined,
        });
      } catch (e) {
        if (!(e instanceof KernelNotCached)) throw e;
        console.log(`skipping cross-version handover: ${e.message}`);
        ctx.skip();
        return;
      }
      expect(report.pairs.map((p) => `${p.from}->${p.to}`)).toEqual(["7.2->7.3", "7.3->7.2"]);
      expect(report.results.map((r) => r.id)).toEqual([
        "test-kho[7.2->7.3]",
        "memfd-basic[7.2->7.3]",
        "test-kho[7.3->7.2]",
        "memfd-basic[7.3->7.2]",
      ]);
      // The verdict follows the results: compatible exactly when all four passed.
      for (const pair of report.pairs) {
        const mine = report.results.filter((r) => r.id.endsWith(`[${pair.from}->${pair.to}]`));
        const allPassed = mine.every((r) => r.verdict === "pass");
        expect(pair.abi === "compatible", mine.map(explain).join("\n")).toBe(allPassed);
        console.log(`cross ${pair.from}->${pair.to}: ${pair.abi} ${pair.firstFailure?.reason ?? ""}`);
      }
      // Each boot ran the series it should, and the facts say what crossed.
      for (const pair of report.pairs) {
        const tag = `[${pair.from}->${pair.to}]`;
        const testKho = report.results.find((r) => r.id === `test-kho${tag}`);
        const memfd = report.results.find((r) => r.id === `memfd-basic${tag}`);
        for (const r of [testKho, memfd]) expect(r?.verdict, r && explain(r)).not.toBe("error");
        const dir = testKho?.artifactsDir ?? "";
        expect(await readFile(join(dir, "boot-1.log"), "utf8")).toMatch(
          new RegExp(`Linux version ${pair.from.replace(".", "\\.")}\\.`),
        );
        if (testKho?.verdict === "pass") {
          // boot 2 is the other series, and its kernel says it was handed over from the first
          expect(testKho.facts, explain(testKho)).toEqual(
            expect.arrayContaining([
              expect.objectContaining({
                kind: "boot",
                boot: 2,
                execCount: 1,
                release: expect.stringMatching(new RegExp(`^${pair.to.replace(".", "\\.")}\\.`)) as unknown,
                execFrom: expect.stringMatching(
                  new RegExp(`^${pair.from.replace(".", "\\.")}\\.`),
                ) as unknown,
              }),
            ]),
          );
        }
        if (memfd?.verdict === "pass") {
          // the memfd crossed with its bytes and frames, and the LUO state the old series wrote decoded
          expect(memfd.facts, explain(memfd)).toEqual(
            expect.arrayContaining([
              expect.objectContaining({ kind: "memfds-restored", memfds: 1, frames: 1024 }),
              expect.objectContaining({ kind: "luo-handover", sessions: 1, files: 1 }),
            ]),
          );
        }
      }
    },
  );
});
