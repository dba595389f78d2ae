import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { archSpec } from "../../src/arch.js";
import { probeStub } from "../../src/vm/probe-stub.js";
import {
  kernelCmdline,
  kvmErrors,
  launchVm,
  numaNodeSizesMiB,
  parseHostfwdPort,
  probeKvm,
  programCounters,
  qemuArgs,
} from "../../src/vm/qemu.js";

const paths = { qmpSocket: "/w/qmp.sock", consoleLog: "/l/console.log" };

describe("qemuArgs", () => {
  it("builds an x86_64 kernel boot from the arch table", () => {
    const args = qemuArgs(
      {
        arch: "x86_64",
        boot: { kind: "kernel", kernel: "/k/bzImage", initrd: "/k/initrd", append: "quiet" },
        ssh: true,
      },
      paths,
    );
    const after = (flag: string) => args[args.indexOf(flag) + 1];
    expect(after("-M")).toBe("q35,i8042=off");
    // Single-threaded TCG on x86: MTTCG races with int3 text patching (see src/arch.ts).
    expect(after("-accel")).toBe("tcg,thread=single");
    // With SSH the kernel configures slirp's network itself (ip=), sparing init four processes.
    expect(after("-append")).toBe(
      "console=ttyS0 no_timer_check tsc=nowatchdog virtio_net.napi_tx=0 kho=on liveupdate=on ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off panic=-1 quiet",
    );
    expect(after("-initrd")).toBe("/k/initrd");
    expect(after("-netdev")).toBe("user,id=n0,hostfwd=tcp:127.0.0.1:0-:22");
    expect(args).toEqual(expect.arrayContaining(["-nographic", "-nodefaults", "-no-reboot"]));
    expect(after("-qmp")).toBe("unix:/w/qmp.sock,server=on,wait=off");
  });

  it("boots arm64 on virt with ttyAMA0, KVM when asked, and kho left out on request", () => {
    const args = qemuArgs(
      { arch: "arm64", boot: { kind: "kernel", kernel: "/k/Image", kho: false }, accel: "kvm" },
      paths,
    );
    // Under KVM the guest gets the host's CPU; TCG-only properties (pauth-impdef) would be refused.
    expect(args.slice(0, 6)).toEqual(["-M", "virt", "-cpu", "host", "-accel", "kvm"]);
    expect(kernelCmdline("arm64", { kind: "kernel", kernel: "/k/Image", kho: false })).toBe(
      "console=ttyAMA0 virtio_net.napi_tx=0 panic=-1",
    );
    // a boot that asks for the early console gets the arch's, right after console=
    expect(
      kernelCmdline("arm64", { kind: "kernel", kernel: "/k/Image", kho: false, earlyConsole: true }),
    ).toBe("console=ttyAMA0 earlycon virtio_net.napi_tx=0 panic=-1");
    expect(kernelCmdline("x86_64", { kind: "kernel", kernel: "/k/bzImage", earlyConsole: true })).toMatch(
      /^console=ttyS0 earlyprintk=serial,ttyS0,115200 no_timer_check tsc=nowatchdog virtio_net.napi_tx=0 kho=on/,
    );
    expect(args).not.toContain("-netdev");
  });

  it("gives each NUMA node a memory backend of its share and a socket of its own", () => {
    const boot = { kind: "kernel", kernel: "/k/Image" } as const;
    const args = qemuArgs({ arch: "arm64", boot, memoryMiB: 3000, smp: 4, numaNodes: 2 }, paths);
    const values = (flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
    expect(values("-object")).toEqual([
      "memory-backend-ram,id=ram-node0,size=1500M",
      "memory-backend-ram,id=ram-node1,size=1500M",
    ]);
    expect(values("-numa")).toEqual([
      "node,nodeid=0,memdev=ram-node0,cpus=0-1",
      "node,nodeid=1,memdev=ram-node1,cpus=2-3",
    ]);
    expect(values("-smp")).toEqual(["4,sockets=2,cores=2,threads=1"]);
    // the sizes add up to -m even when it does not divide evenly
    expect(numaNodeSizesMiB(1025, 3)).toEqual([340, 340, 345]);
    // one node is the machine's own RAM, as before
    expect(qemuArgs({ arch: "arm64", boot, numaNodes: 1 }, paths)).not.toContain("-numa");
    expect(() => qemuArgs({ arch: "arm64", boot, memoryMiB: 200, numaNodes: 2 }, paths)).toThrow(
      /128 MiB or more/,
    );
    expect(() => qemuArgs({ arch: "arm64", boot, smp: 3, numaNodes: 2 }, paths)).toThrow(/CPU count/);
  });

  it("escapes commas in option values", () => {
    const args = qemuArgs(
      { arch: "x86_64", boot: { kind: "firmware", firmware: "/f" } },
      { ...paths, consoleLog: "/a,b/log" },
    );
    expect(args).toContain("stdio,id=con0,signal=off,logfile=/a,,b/log");
  });
});

describe("parseHostfwdPort", () => {
  it("reads the port QEMU bound from info usernet", () => {
    const info = [
      "Hub -1 (n0):",
      "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ",
      "  TCP[HOST_FORWARD]   8       127.0.0.1 35283       10.0.2.15    22     0     0",
    ].join("\r\n");
    expect(parseHostfwdPort(info)).toBe(35283);
    expect(parseHostfwdPort(info, 80)).toBeUndefined();
  });
});

describe("probeKvm", () => {
  it("knows an arm64 guest cannot use an x86_64 host's KVM (and the reverse)", async () => {
    const foreign = process.arch === "arm64" ? "x86_64" : "arm64";
    await expect(probeKvm(foreign, 1_000)).resolves.toEqual({
      usable: false,
      reason: `KVM cannot run ${foreign} guests on a ${process.arch} host`,
    });
  });
});

describe("what QEMU says about a stalled guest", () => {
  it("finds each vCPU's program counter by the arch's register name", () => {
    // QEMU 10.0's `info registers -a`: x86_64 in long mode, x86 before it, aarch64.
    const x86 = [
      "CPU#0",
      "RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000001 RDX=0000000000000000",
      "RIP=ffffffff81c3d2e5 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1",
      "CPU#1",
      "RIP=ffffffff810a7b40 RFL=00000202 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0",
    ].join("\n");
    const realMode =
      "EAX=00000000 EBX=00000000\nEIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\n";
    const arm = "CPU#0\n PC=ffff800080a1b2c4 X00=0000000000000000\nCPU#1\n PC=ffff8000800123f0 X00=1\n";
    expect(programCounters("x86_64", x86)).toEqual(["ffffffff81c3d2e5", "ffffffff810a7b40"]);
    expect(programCounters("x86_64", realMode)).toEqual(["0000fff0"]);
    expect(programCounters("arm64", arm)).toEqual(["ffff800080a1b2c4", "ffff8000800123f0"]);
    // Each arch reads its own register: neither takes the other's.
    expect(programCounters("arm64", x86)).toEqual([]);
    expect(programCounters("x86_64", arm)).toEqual([]);
  });

  it("keeps QEMU's stderr lines about KVM, in order, and nothing else", async () => {
    const logDir = mkdtempSync(join(tmpdir(), "qemu-stderr-test-"));
    try {
      expect(await kvmErrors({ logDir })).toEqual([]); // no stderr log yet
      writeFileSync(
        join(logDir, "qemu-stderr.log"),
        [
          "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.vmx [bit 5]",
          "error: kvm run failed Bad address",
          "RAX=0000000000000000 RBX=0000000000000000",
          "KVM internal error. Suberror: 1",
          "emulation failure",
          "",
        ].join("\n"),
      );
      expect(await kvmErrors({ logDir })).toEqual([
        "error: kvm run failed Bad address",
        "KVM internal error. Suberror: 1",
        "emulation failure",
      ]);
    } finally {
      rmSync(logDir, { recursive: true, force: true });
    }
  });
});

function qemuMissing(): string | undefined {
  try {
    execFileSync("qemu-system-x86_64", ["--version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "qemu-system-x86_64 is not installed";
  }
}
const missing = qemuMissing();
if (missing) console.log(`skipping QEMU launch tests: ${missing}`);

describe.skipIf(missing)("launchVm with the probe stub under TCG", () => {
  let dir: string;
  let firmware: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "qemu-test-"));
    firmware = join(dir, "stub.bin");
    writeFileSync(firmware, probeStub(archSpec("x86_64")));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs two guests at once, each with its own sockets, port and console", async () => {
    const launch = (n: number) =>
      launchVm({
        arch: "x86_64",
        boot: { kind: "firmware", firmware },
        memoryMiB: 16,
        smp: 1,
        ssh: true,
        logDir: join(dir, `vm${n}`),
      });
    const vms = await Promise.all([launch(1), launch(2)]);
    try {
      expect(vms[0]?.sshPort).not.toBe(vms[1]?.sshPort);
      expect(vms[0]?.workDir).not.toBe(vms[1]?.workDir);
      for (const vm of vms) {
        await vm.console.waitFor(/kho-kvm-probe-ok/, { deadlineMs: 10_000 });
        expect((await vm.qmp.queryStatus()).status).toBe("running");
      }
    } finally {
      const exits = await Promise.all(vms.map((vm) => vm.stop()));
      expect(exits.map((e) => e.code)).toEqual([0, 0]);
    }
    for (const vm of vms) {
      expect(existsSync(vm.workDir)).toBe(false); // logs live elsewhere, so the work dir goes
      expect(readFileSync(join(vm.logDir, "boot-1.log"), "utf8")).toBe("kho-kvm-probe-ok\n");
      expect(readFileSync(join(vm.logDir, "console.log"), "utf8")).toBe("kho-kvm-probe-ok\r\n");
      expect(readFileSync(join(vm.logDir, "qemu.cmd"), "utf8")).toMatch(
        /^qemu-system-x86_64 -M q35,i8042=off /,
      );
    }
  });

  it("says where a real guest's vCPU is, and that TCG reported nothing about KVM", async () => {
    const vm = await launchVm({
      arch: "x86_64",
      boot: { kind: "firmware", firmware },
      memoryMiB: 16,
      smp: 1,
      logDir: join(dir, "vm-regs"),
    });
    try {
      await vm.console.waitFor(/kho-kvm-probe-ok/, { deadlineMs: 10_000 });
      // The stub halts in 32-bit protected mode in its 32-bit code (offset 0x200 of the ROM's
      // alias at 0xf0000): QEMU shows EIP, the arch table's x86 program counter.
      const pcs = programCounters("x86_64", await vm.qmp.humanMonitorCommand("info registers"));
      expect(pcs).toHaveLength(1);
      expect(pcs[0]).toMatch(/^000f0[23][0-9a-f]{2}$/);
      expect(await kvmErrors(vm)).toEqual([]);
    } finally {
      await vm.stop();
    }
  });

  it("fails a waiting step as qemu-exited when QEMU goes away", async () => {
    const vm = await launchVm({
      arch: "x86_64",
      boot: { kind: "firmware", firmware },
      memoryMiB: 16,
      smp: 1,
      logDir: join(dir, "vm3"),
    });
    const waiting = vm.console.waitFor(/never printed/, { deadlineMs: 10_000, step: "boot" });
    await vm.qmp.quit();
    await expect(waiting).rejects.toMatchObject({ kind: "qemu-exited", detail: "QEMU exited with code 0" });
    await vm.stop();
  });
});
