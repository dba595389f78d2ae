// Issue "Run the kernel's own live-update selftests across kexec": luo_kexec_simple and
// luo_multi_session through stage 1, kexec and stage 2 on both arches, and a user's own
// two-stage test through `kho exec`.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES } from "../../src/arch.js";
import { runScenarios } from "../../src/orchestrate/runner.js";
import { SELFTEST_SCENARIOS } from "../../src/scenarios/selftests.js";
import { stderrLogger } from "../../src/util/log.js";
import { defaultKernel, e2eOutDir, HOUR } from "./helpers.js";

describe.each(ARCH_NAMES)("kernel liveupdate selftests on %s", (arch) => {
  it("luo_kexec_simple and luo_multi_session pass both stages across kexec", { timeout: HOUR }, async () => {
    await defaultKernel(arch);
    const outDir = await e2eOutDir("selftests-");
    const scenarios = SELFTEST_SCENARIOS.filter((s) => /luo_kexec_simple|luo_multi_session/.test(s.id));
    const { results } = await runScenarios({
      arches: [arch],
      scenarios,
      outDir,
      log: stderrLogger,
      onResult: () => undefined,
    });
    for (const r of results) {
      expect(r.verdict, `${r.id}: ${r.reason ?? ""}\n${(r.evidence ?? []).join("\n")}`).toBe("pass");
      const stage2 = await readFile(join(r.artifactsDir ?? "", "stage2.txt"), "utf8");
      expect(stage2).toMatch(/--- (SIMPLE|MULTI-SESSION) KEXEC TEST PASSED ---/);
    }
  });
});

describe("kho exec", () => {
  it(
    "runs a command per boot with a kexec between, and fails on a failing stage",
    { timeout: HOUR },
    async () => {
      await defaultKernel("x86_64");
      const out = await e2eOutDir("exec-");
      const stage1 = "cat /proc/sys/kernel/random/boot_id > /dev/null && echo first";
      const stage2 = "dmesg | grep -q 'KHO: exec from' && echo second";
      const ok = await execa(
        "node",
        ["bin/kho", "exec", "--arch", "x86_64", "--stage", stage1, "--stage", stage2, "--out", out],
        {
          reject: false,
        },
      );
      expect(ok.exitCode, ok.stderr).toBe(0);
      expect(await readFile(join(out, "x86_64", "exec", "stage2.txt"), "utf8")).toBe("second\n");
      const bad = await execa(
        "node",
        ["bin/kho", "exec", "--arch", "x86_64", "--stage", "true", "--stage", "exit 3"],
        {
          reject: false,
        },
      );
      expect(bad.exitCode).toBe(1);
      expect(bad.stdout).toMatch(/^# exec\.x86_64: stage 2 exited 3 in boot 2: exit 3$/m);
    },
  );
});
