// Issue "kho command and its kernels": the default kernels build (or come from the cache) for
// both arches, pass the harness's own inspection, and the CLI refuses a non-KHO kernel.
import { access } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES } from "../../src/arch.js";
import { buildKernel } from "../../src/kernel/build.js";
import { inspectKernel } from "../../src/kernel/inspect.js";
import { debianKernelSource } from "../../src/kernel/source.js";
import { fetchStockKernel } from "../../src/kernel/stock.js";
import { stderrLogger } from "../../src/util/log.js";
import { defaultKernel, HOUR } from "./helpers.js";

const kho = (...args: string[]) => execa("node", ["bin/kho", ...args], { reject: false, all: true });

describe.each(ARCH_NAMES)("the %s kernel", (arch) => {
  it("builds with every KHO/LUO option and inspects as ready", { timeout: HOUR }, async () => {
    const kernel = await defaultKernel(arch);
    expect(kernel.manifest.arch).toBe(arch);
    expect(kernel.manifest.kernelRelease).toMatch(/^7\.\d+/);
    await access(join(kernel.dir, kernel.manifest.headersDir, "include", "linux", "liveupdate.h"));
    const report = await inspectKernel(kernel.imagePath, { expectArch: arch });
    expect(report.arch).toBe(arch);
    expect(report.ready).toBe(true);
    expect(report.readiness.filter((r) => r.status !== "ok").map((r) => r.feature)).toEqual([]);
    expect(report.config?.get("KEXEC_HANDOVER")).toBe("y");
  });

  it("is a cache hit the second time, in seconds", { timeout: HOUR }, async () => {
    const first = await defaultKernel(arch);
    const source = await debianKernelSource(undefined, stderrLogger);
    const again = await buildKernel({ arch, source, userFragments: [], log: stderrLogger });
    expect(again.cached).toBe(true);
    expect(again.kernel.manifest.key).toBe(first.manifest.key);
    expect(again.ms).toBeLessThan(10_000);
  });

  it("`kho kernel inspect` prints the readiness table and exits 0", { timeout: HOUR }, async () => {
    const kernel = await defaultKernel(arch);
    const r = await kho("kernel", "inspect", kernel.imagePath, "--arch", arch, "--json");
    expect(r.exitCode, r.all).toBe(0);
    const json = JSON.parse(r.stdout) as { arch: string; ready: boolean };
    expect(json).toMatchObject({ arch, ready: true });
  });

  it("refuses Debian's stock kernel (KHO off) in one sentence", { timeout: 10 * 60_000 }, async () => {
    const stock = await fetchStockKernel(arch, stderrLogger);
    const r = await kho("kernel", "inspect", stock.image);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/CONFIG_KEXEC_HANDOVER off: enable CONFIG_KEXEC_HANDOVER=y/);
    expect(r.all).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe("bad input to kho kernel inspect", () => {
  it("a file that is not a kernel", async () => {
    const r = await kho("kernel", "inspect", "package.json");
    expect(r.exitCode).toBe(1);
    expect(r.all).toMatch(/package\.json is not a Linux kernel image/);
    expect(r.all).not.toMatch(/\n\s+at /);
  });

  it("a kernel of the other arch", { timeout: HOUR }, async () => {
    const arm = await defaultKernel("arm64");
    const r = await kho("kernel", "inspect", arm.imagePath, "--arch", "x86_64");
    expect(r.exitCode).toBe(1);
    expect(r.all).toMatch(/is an arm64 kernel, but --arch x86_64 was asked/);
  });
});
