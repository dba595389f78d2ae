// Boots a real x86_64 kernel with no initrd: the console must show the banner, and the
// watchdog must report the root-mount panic as a panic, with its excerpt.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GuestFault } from "../../src/vm/fault.js";
import { launchVm } from "../../src/vm/qemu.js";
import { defaultKernel, e2eOutDir, HOUR } from "./helpers.js";

describe("x86_64 kernel without a root fs", () => {
  it("shows the banner, then reports the VFS panic as a panic", { timeout: HOUR }, async () => {
    // KHO_TEST_KERNEL_X86_64 boots another bzImage instead of the harness's default kernel.
    const kernel = process.env.KHO_TEST_KERNEL_X86_64 ?? (await defaultKernel("x86_64")).imagePath;
    const logDir = await e2eOutDir("vm-boot-");
    const accel = process.env.KHO_ACCEL === "kvm" ? "kvm" : "tcg";
    const vm = await launchVm({
      arch: "x86_64",
      boot: { kind: "kernel", kernel },
      accel,
      memoryMiB: 512,
      logDir,
    });
    try {
      const start = performance.now();
      const banner = await vm.console.waitFor(/Linux version \d/, {
        deadlineMs: 60_000,
        silenceMs: 30_000,
        step: "boot",
      });
      expect(banner.line.boot).toBe(1);

      const err: unknown = await vm.console
        .waitFor(/Run \/init/, { deadlineMs: 300_000, silenceMs: 60_000, step: "boot" })
        .catch((e: unknown) => e);
      console.log(`boot to panic: ${((performance.now() - start) / 1000).toFixed(1)}s (${accel})`);
      expect(err).toBeInstanceOf(GuestFault);
      const fault = err as GuestFault;
      expect(fault.kind).toBe("panic");
      expect(fault.detail).toMatch(/^Kernel panic - not syncing: VFS: Unable to mount root fs/);
      expect(fault.excerpt.some((l) => l.includes("Kernel panic - not syncing: VFS"))).toBe(true);
      expect(fault.excerpt.length).toBeGreaterThan(5);

      // panic=-1 reboots at once and -no-reboot turns that into QEMU exiting.
      expect((await vm.exited).code).toBe(0);
      expect(readFileSync(join(logDir, "boot-1.log"), "utf8")).toContain("Kernel panic - not syncing: VFS");
    } finally {
      await vm.stop();
      rmSync(logDir, { recursive: true, force: true });
    }
  });
});
