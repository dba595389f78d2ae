// Boots a real x86_64 kernel with no initrd: the console must show the banner, and the
// watchdog must report the root-mount panic as a panic, with its excerpt.
import { readFileSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GuestFault } from "../../src/vm/fault.js";
import { ProcMemReader } from "../../src/vm/guest-ram.js";
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

  it("reads guest RAM straight from QEMU's memory exactly as pmemsave does", { timeout: HOUR }, async () => {
    const kernel = process.env.KHO_TEST_KERNEL_X86_64 ?? (await defaultKernel("x86_64")).imagePath;
    const logDir = await e2eOutDir("vm-ram-");
    // 5 GiB: RAM above 4 GiB sits at another offset of QEMU's block than its guest address.
    const vm = await launchVm({ arch: "x86_64", boot: { kind: "kernel", kernel }, memoryMiB: 5120, logDir });
    try {
      await vm.console.waitFor(/Linux version \d/, { deadlineMs: 60_000, step: "boot" });
      await vm.qmp.stop(); // both reads must see the same bytes
      const reader = await ProcMemReader.open(vm.pid, vm.qmp);
      expect(reader).toBeDefined();
      let nonZero = 0;
      // Low RAM, where the kernel and its early page tables are, and RAM above 4 GiB.
      for (const paddr of [
        0x9000n,
        0x100000n,
        0x1000000n,
        0x1800000n,
        0x2000000n,
        0x100000000n,
        0x13fff0000n,
      ]) {
        const direct = reader?.read(paddr, 8192);
        const file = join(logDir, "page.bin");
        await vm.qmp.pmemsave(paddr, 8192, file);
        expect(Buffer.from(direct ?? []).equals(await readFile(file)), `0x${paddr.toString(16)}`).toBe(true);
        if (direct?.some((b) => b !== 0)) nonZero++;
      }
      expect(nonZero).toBeGreaterThan(0);
      // Outside RAM (the PCI hole): no direct read; callers fall back to pmemsave.
      expect(reader?.read(0xb0000000n, 4096)).toBeUndefined();
    } finally {
      await vm.stop();
      rmSync(logDir, { recursive: true, force: true });
    }
  });
});
