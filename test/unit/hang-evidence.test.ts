import { describe, expect, it } from "vitest";
import type { ArchName } from "../../src/arch.js";
import { kexecHangEvidence, TASK_SNAPSHOT } from "../../src/session/hang-evidence.js";
import type { Vm } from "../../src/vm/qemu.js";
import type { SshLink } from "../../src/vm/ssh.js";

// QEMU 10.0's `info registers -a` starts each vCPU's block like this (aarch64, then x86_64).
const ARM_REGS = "CPU#0\n PC=ffff800080a1b2c4 X00=0000000000000000\nCPU#1\n PC=ffff8000800123f0 X00=1\n";
const X86_REGS = "CPU#0\nRAX=0000000000000000 RBX=0\nRIP=ffffffff81c3d2e5 RFL=00000246\n";

function fakeVm(opts: { arch: ArchName; regs: string; consoleAfter: string[] }): Vm {
  const lines: string[] = [];
  return {
    arch: opts.arch,
    qmp: {
      queryStatus: () => Promise.resolve({ status: "running", running: true }),
      humanMonitorCommand: () => Promise.resolve(opts.regs),
    },
    console: {
      mark: () => lines.length,
      linesSince: (mark: number) => {
        lines.push(...opts.consoleAfter.splice(0));
        return lines.slice(mark);
      },
    },
  } as unknown as Vm;
}

describe("what a guest that went silent mid-kexec was doing", () => {
  it("old kernel alive: its tasks with stacks, SysRq output and the vCPUs", async () => {
    const vm = fakeVm({ arch: "arm64", regs: ARM_REGS, consoleAfter: ["sysrq: Show Blocked State"] });
    let ran = "";
    const link = {
      exec: (cmd: string) => {
        ran = cmd;
        return Promise.resolve({
          code: 0,
          signal: null,
          stderr: "",
          stdout: "pid 82 kho-agent S (sleeping)\n    [<0>] anon_pipe_read+0x314/0x3b4\n",
        });
      },
    } as unknown as SshLink;
    const lines = await kexecHangEvidence(vm, link);
    expect(ran).toBe(TASK_SNAPSHOT);
    expect(lines).toEqual([
      "QEMU: guest state running",
      "the old kernel still answers SSH (no kexec started); its running and blocked tasks:",
      "  pid 82 kho-agent S (sleeping)",
      "      [<0>] anon_pipe_read+0x314/0x3b4",
      "SysRq w and l on the console:",
      "  sysrq: Show Blocked State",
      "vCPUs: CPU0 pc=ffff800080a1b2c4, CPU1 pc=ffff8000800123f0",
    ]);
  }, 10_000);

  it("old kernel gone: says SSH does not answer, and where the vCPUs are", async () => {
    const vm = fakeVm({ arch: "x86_64", regs: X86_REGS, consoleAfter: [] });
    const link = { exec: () => Promise.reject(new Error("connection lost\nmore")) } as unknown as SshLink;
    expect(await kexecHangEvidence(vm, link)).toEqual([
      "QEMU: guest state running",
      "the old kernel does not answer SSH either: connection lost",
      "vCPUs: CPU0 pc=ffffffff81c3d2e5",
    ]);
  });
});
