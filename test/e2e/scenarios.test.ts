// Issue "Boot, SSH and kexec": the first scenarios on real QEMU guests of both arches, each
// booting the harness's kernel, kexecing with KHO and checking over SSH.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import type { ScenarioResult } from "../../src/report/verdict.js";
import { defaultKernel, e2eOutDir, explain, HOUR, runSelected } from "./helpers.js";

async function runOne(arch: ArchName, id: string): Promise<ScenarioResult> {
  const [r] = await runSelected(arch, id);
  if (!r) throw new Error("no result");
  return r;
}

describe.each(ARCH_NAMES)("scenarios on %s", (arch) => {
  it("test-kho: the second kernel reports KHO restore succeeded", { timeout: HOUR }, async () => {
    const r = await runOne(arch, "test-kho");
    expect(r.verdict, explain(r)).toBe("pass");
    // boot 2 says it came from the kernel under test, as the first handover
    const boot = r.facts?.find((f) => f.kind === "boot");
    expect(boot, explain(r)).toMatchObject({ boot: 2, execCount: 1 });
    expect(boot && "release" in boot && boot.release).toMatch(/^\d+\.\d+/);
    expect(boot && "execFrom" in boot && boot.execFrom).toBe(boot && "release" in boot && boot.release);
    expect(r.phaseMs.kexec).toBeGreaterThan(0);
    const logs = await readdir(r.artifactsDir ?? "");
    expect(logs).toEqual(expect.arrayContaining(["boot-1.log", "boot-2.log"]));
    expect(await readFile(join(r.artifactsDir ?? "", "boot-2.log"), "utf8")).toMatch(/KHO restore succeeded/);
  });

  it(
    "memfd-basic: 4 MiB survives kexec in place and is in the decoded KHO map",
    { timeout: HOUR },
    async () => {
      const r = await runOne(arch, "memfd-basic");
      expect(r.verdict, explain(r)).toBe("pass");
      expect(r.facts, explain(r)).toEqual(
        expect.arrayContaining([
          // 4 MiB, the host's bytes, on the same 1024 frames after the kexec
          expect.objectContaining({
            kind: "memfds-restored",
            memfds: 1,
            sessions: 1,
            bytes: 4 << 20,
            frames: 1024,
          }),
          // every frame in the host's decoding of the map
          expect.objectContaining({ kind: "handover-map", framesFound: 1024 }),
          // the LUO state as the old kernel left it, read with the guest paused at the kexec
          expect.objectContaining({ kind: "luo-handover", sessions: 1, files: 1, folios: 1024 }),
          expect.objectContaining({ kind: "blackout", step: "kexec" }),
        ]),
      );
      // every planned check was done and passed, the at-kexec ones among them
      expect(
        r.checks?.filter((c) => c.status !== "passed"),
        explain(r),
      ).toEqual([]);
      expect(r.checks?.map((c) => c.check)).toEqual(
        expect.arrayContaining(["memfd.contents", "memfd.frames", "handover.fdt-at-kexec", "luo.folios"]),
      );
      const map = await readFile(join(r.artifactsDir ?? "", "preserved-map.txt"), "utf8");
      // stopped at the handover by the breakpoint on machine_kexec, not by the console line
      expect(map).toMatch(
        /subtrees read at the kexec \(guest paused \d+ ms, at a breakpoint on machine_kexec\)/,
      );
      expect(r.facts, explain(r)).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ kind: "handover-pause", via: "breakpoint", detail: "machine_kexec" }),
        ]),
      );
      expect(map).toMatch(/session "kho-memfd-basic": 1 file\(s\)\n\s+token 0x1 memfd-v2 .*size 4194304/);
      const files = await readdir(r.artifactsDir ?? "");
      expect(files).toEqual(
        expect.arrayContaining([
          "agent-preserve.json",
          "agent-restore.json",
          "handover.json",
          "preserved-map.txt",
          "kho-in.dtb",
        ]),
      );
      expect(files).not.toContain("memory-before-kexec.elf"); // dumps are dropped after a pass
    },
  );

  it(
    "memfd-basic with KHO_KEXEC_PAUSE=console: the console line stops the guest instead, and the at-kexec checks still pass",
    { timeout: HOUR },
    async () => {
      process.env.KHO_KEXEC_PAUSE = "console";
      try {
        const r = await runOne(arch, "memfd-basic");
        expect(r.verdict, explain(r)).toBe("pass");
        expect(r.facts, explain(r)).toEqual(
          expect.arrayContaining([
            expect.objectContaining({
              kind: "handover-pause",
              via: "console",
              detail: "KHO_KEXEC_PAUSE=console",
            }),
          ]),
        );
        expect(
          r.checks?.filter((c) => c.status !== "passed"),
          explain(r),
        ).toEqual([]);
      } finally {
        delete process.env.KHO_KEXEC_PAUSE;
      }
    },
  );

  it(
    "no-kho: with kho=off there is no handover machinery, and that is a pass",
    { timeout: HOUR },
    async () => {
      const r = await runOne(arch, "no-kho");
      expect(r.verdict, explain(r)).toBe("pass");
    },
  );

  it(
    "kexec-traffic: 10 kexecs with a bulk TCP send at the trigger, every new kernel up (7.2.13 hung 3 in 55 on arm64 without virtio_net.napi_tx=0)",
    { timeout: HOUR },
    async () => {
      const results = await runSelected(arch, "kexec-traffic", { repeat: 10, jobs: 2 });
      expect(results).toHaveLength(10);
      for (const r of results) {
        expect(r.verdict, explain(r)).toBe("pass");
        const traffic = r.facts?.find((f) => f.kind === "traffic");
        // the guest's NIC sent and received right up to the kexec, and the host saw both streams
        expect(traffic, explain(r)).toMatchObject({
          windowTxBytes: expect.any(Number) as number,
          windowRxBytes: expect.any(Number) as number,
        });
        if (traffic?.kind !== "traffic") throw new Error("no traffic fact");
        expect(traffic.windowTxBytes).toBeGreaterThanOrEqual(128 * 1024);
        expect(traffic.windowRxBytes).toBeGreaterThan(0);
        expect(traffic.upBytesAtTrigger).toBeGreaterThan(1 << 20);
        expect(traffic.downBytesAtTrigger).toBeGreaterThan(0);
        // the harness's remedy, as the guest ran it
        expect(traffic.napiTx).toBe(false);
      }
    },
  );
});

describe("kho run", () => {
  it("prints KTAP, a summary and follows kselftest exit codes", { timeout: HOUR }, async () => {
    await defaultKernel("x86_64");
    const out = await e2eOutDir("cli-");
    const r = await execa(
      "node",
      ["bin/kho", "run", "--arch", "x86_64", "--scenario", "no-kho", "--out", out],
      {
        reject: false,
      },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.split("\n").slice(0, 2)).toEqual(["KTAP version 1", "1..1"]);
    expect(r.stdout).toMatch(/^ok 1 no-kho\.x86_64$/m);
    expect(r.stderr).toMatch(/no-kho\s+x86_64\s+PASS/);
    const report = JSON.parse(await readFile(join(out, "report.json"), "utf8")) as {
      exitCode: number;
      results: unknown[];
    };
    expect(report.exitCode).toBe(0);
    expect(report.results).toHaveLength(1);
  });

  it("refuses an unknown scenario in one sentence", async () => {
    const r = await execa("node", ["bin/kho", "run", "--scenario", "nope"], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(
      /^kho: no scenario matches "nope" \(known: test-kho, memfd-basic, .*, no-kho, .*, chain-memfd.*\)$/m,
    );
  });
});
