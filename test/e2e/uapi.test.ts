// Issue 19, items 2-3 on real guests of both arches: the model-based test of /dev/liveupdate
// (kho fuzz-uapi) agrees with the kernel over hundreds of ops and across a kexec; a planted
// model error is found, shrunk to at most three ops and replayed by the printed command; and
// the three race scenarios pass with the counts that show each race happened.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES } from "../../src/arch.js";
import { withParams } from "../../src/api/scenario.js";
import { runScenarios } from "../../src/orchestrate/runner.js";
import { loadReport } from "../../src/report/schema.js";
import { uapiModel } from "../../src/scenarios/uapi-model.js";
import { stderrLogger } from "../../src/util/log.js";
import { defaultKernel, e2eOutDir, explain, HOUR, runSelected } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function kho(args: readonly string[]) {
  return execa("node", [join(ROOT, "bin/kho"), ...args], { cwd: ROOT, reject: false, all: true });
}

async function uapiFact(outDir: string) {
  const { doc: report } = await loadReport(outDir);
  const [r] = report.results;
  if (!r) throw new Error("no result");
  return { r, facts: (r.facts ?? []).filter((f) => f.kind === "uapi-model") };
}

describe.each(ARCH_NAMES)("the LUO uAPI model on %s", (arch) => {
  it("agrees with the kernel on every op, in one kernel and across a kexec", { timeout: HOUR }, async () => {
    await defaultKernel(arch);
    const { results } = await runScenarios({
      arches: [arch],
      scenarios: [withParams(uapiModel, { runs: 60, kexecRuns: 1, seed: 3 })],
      outDir: await e2eOutDir(`uapi-${arch}-`),
      log: stderrLogger,
      onResult: () => undefined,
    });
    const [r] = results;
    if (!r) throw new Error("no result");
    expect(r.verdict, explain(r)).toBe("pass");
    const facts = (r.facts ?? []).filter((f) => f.kind === "uapi-model");
    expect(facts, explain(r)).toEqual([
      expect.objectContaining({ phase: "basic", seed: 3, runs: 60, kexecs: 0 }),
      expect.objectContaining({ phase: "kexec", seed: 3, runs: 1, kexecs: 1 }),
    ]);
    const basic = facts[0];
    expect(basic && "ops" in basic ? basic.ops : 0).toBeGreaterThan(1000);
  });

  it("runs the races, each with the counts that show it happened", { timeout: HOUR }, async () => {
    const results = await runSelected(arch, "race-*");
    expect(results.map((r) => [r.id, r.verdict])).toEqual([
      ["race-finish-retrieve", "pass"],
      ["race-preserve-reboot", "pass"],
      ["race-close-ioctl", "pass"],
    ]);
    const counts = (id: string) => {
      const r = results.find((x) => x.id === id);
      const f = r?.facts?.find((x) => x.kind === "race");
      return f && "counts" in f ? f.counts : {};
    };
    expect(counts("race-finish-retrieve").sessions).toBe(8);
    expect(counts("race-finish-retrieve").ok).toBeGreaterThanOrEqual(8);
    expect(counts("race-finish-retrieve").enoent).toBeGreaterThanOrEqual(64);
    expect(counts("race-preserve-reboot")).toMatchObject({ gaps: 0, bad_content: 0, side_gaps: 0 });
    expect(counts("race-preserve-reboot").files).toBeGreaterThanOrEqual(20);
    expect(counts("race-close-ioctl")).toMatchObject({
      other: 0,
      frozen_after_close: 0,
      reopen_errno: 0,
      ebadf: 100,
    });
  });
});

describe("a planted model error", () => {
  it(
    "is found, shrunk to at most three ops, and replayed by the command the report prints",
    { timeout: HOUR },
    async () => {
      const first = await e2eOutDir("uapi-plant-");
      const r1 = await kho([
        "fuzz-uapi",
        "--arch",
        "x86_64",
        "--phase",
        "basic",
        "--plant",
        "empty-name-enoent",
        "--seed",
        "9",
        "--out",
        first,
      ]);
      expect(r1.exitCode, r1.all).toBe(1);
      expect(r1.all).toMatch(/^# fuzz-uapi seed 9$/m);
      const a = await uapiFact(first);
      expect(a.r.verdict).toBe("fail");
      expect(a.r.reason).toMatch(/create \d+ \d+ - exact expected ENOENT, got EINVAL/);
      const fact = a.facts[0];
      const replay = fact && "replay" in fact ? fact.replay : undefined;
      expect(fact && "minimalOps" in fact ? fact.minimalOps : 99).toBeLessThanOrEqual(3);
      expect(replay).toMatch(
        /^--seed 9 --phase basic --path [\d:]+ --replay-path \S+ --plant empty-name-enoent$/,
      );
      // the replay: one sequence, the same mismatch
      const second = await e2eOutDir("uapi-replay-");
      const r2 = await kho(["fuzz-uapi", "--arch", "x86_64", ...(replay ?? "").split(" "), "--out", second]);
      expect(r2.exitCode, r2.all).toBe(1);
      const b = await uapiFact(second);
      expect(b.r.reason).toBe(a.r.reason);
      expect(b.facts[0]).toMatchObject({
        runs: 1,
        minimalOps: fact && "minimalOps" in fact ? fact.minimalOps : -1,
      });
    },
  );
});
