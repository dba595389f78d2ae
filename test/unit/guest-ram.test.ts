import { describe, expect, it } from "vitest";
import { directReader } from "../../src/memory/guest-memory.js";
import type { QmpClient } from "../../src/vm/qmp.js";
import { nodeOfAddress, parseRamblocks, ramWindows } from "../../src/vm/guest-ram.js";

// Captured from QEMU 10.0.2 (x86_64 q35 with 6 GiB, `info ramblock` and `info mtree -f`); the
// system view is not the first once the guest has booted.
const X86_RAMBLOCK = `              Block Name    PSize              Offset               Used              Total                HVA  RO
                  pc.ram    4 KiB  0x0000000000000000 0x0000000180000000 0x0000000180000000 0x00007fbec3e00000  rw
    /rom@etc/acpi/tables    4 KiB  0x0000000180080000 0x0000000000020000 0x0000000000200000 0x00007fc091a00000  ro
                 pc.bios    4 KiB  0x0000000180000000 0x0000000000040000 0x0000000000040000 0x00007fc092a00000  ro
`;
const X86_MTREE = `FlatView #0
 AS "I/O", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
  0000000000100000-000000000010ffff (prio 0, ram): pc.ram @0000000000000000

FlatView #1
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 Root memory region: system
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom @0000000000000000
  0000000000100000-000000007fffffff (prio 0, ram): pc.ram @0000000000100000
  00000000b0000000-00000000bfffffff (prio 0, i/o): pcie-mmcfg-mmio
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-00000001ffffffff (prio 0, ram): pc.ram @0000000080000000

FlatView #2
 AS "cpu-smm-0", root: memory
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram
`;

describe("guest RAM layout from QEMU", () => {
  it("maps every RAM range of the system view to its host address", () => {
    const blocks = parseRamblocks(X86_RAMBLOCK);
    expect(blocks.get("pc.ram")).toBe(0x7fbec3e00000n);
    expect(blocks.get("pc.bios")).toBe(0x7fc092a00000n);
    expect(ramWindows(X86_MTREE, blocks)).toEqual([
      { start: 0n, end: 0xc0000n, hva: 0x7fbec3e00000n, block: "pc.ram" },
      { start: 0x100000n, end: 0x80000000n, hva: 0x7fbec3e00000n + 0x100000n, block: "pc.ram" },
      // above 4 GiB: the second half of pc.ram (its offset, not its guest address)
      { start: 0x100000000n, end: 0x200000000n, hva: 0x7fbec3e00000n + 0x80000000n, block: "pc.ram" },
    ]);
  });

  it("reads arm64's RAM at 1 GiB and nothing from a view it cannot match", () => {
    const blocks = parseRamblocks(
      "Block Name PSize Offset Used Total HVA RO\n mach-virt.ram    4 KiB  0x0000000000000000 0x0000000040000000 0x0000000040000000 0x00007fde73e00000  rw\n",
    );
    const mtree =
      'FlatView #0\n AS "memory", root: system\n  0000000040000000-000000007fffffff (prio 0, ram): mach-virt.ram\n';
    expect(ramWindows(mtree, blocks)).toEqual([
      { start: 0x40000000n, end: 0x80000000n, hva: 0x7fde73e00000n, block: "mach-virt.ram" },
    ]);
    expect(ramWindows(mtree, new Map())).toEqual([]);
    expect(ramWindows("no flat views here", blocks)).toEqual([]);
  });
});

describe("directReader", () => {
  /** A stand-in QEMU: this process (its /proc/<pid>/mem opens) answering the two HMP commands. */
  function fakeQemu() {
    const asked: string[] = [];
    const qmp = {
      humanMonitorCommand: (cmd: string) => {
        asked.push(cmd);
        return Promise.resolve(cmd === "info ramblock" ? X86_RAMBLOCK : X86_MTREE);
      },
    } as unknown as QmpClient;
    return { vm: { pid: process.pid, qmp }, asked };
  }

  it("asks QEMU where its RAM is once per process, however many decoders read", async () => {
    const a = fakeQemu();
    const first = directReader(a.vm);
    expect(directReader(a.vm)).toBe(first);
    expect(await first).toBeDefined();
    await directReader(a.vm);
    expect(a.asked).toEqual(["info ramblock", "info mtree -f"]);
    const b = fakeQemu();
    expect(directReader(b.vm)).not.toBe(first);
    await directReader(b.vm);
    expect(b.asked).toHaveLength(2);
  });

  // Captured from QEMU 10.0.2, q35 with 2 GiB in two nodes (qemuArgs numaNodes: 2), booted.
  const NUMA_RAMBLOCK = `              Block Name    PSize              Offset               Used              Total                HVA  RO
               ram-node0    4 KiB  0x0000000000000000 0x0000000040000000 0x0000000040000000 0x00007f659fe00000  rw
               ram-node1    4 KiB  0x0000000040000000 0x0000000040000000 0x0000000040000000 0x00007f655fc00000  rw
                 pc.bios    4 KiB  0x0000000080000000 0x0000000000040000 0x0000000000040000 0x00007f6624400000  ro
`;
  const NUMA_MTREE = `FlatView #3
 AS "memory", root: system
 Root memory region: system
  0000000000000000-00000000000c2fff (prio 0, ram): ram-node0
  00000000000c3000-00000000000e3fff (prio 0, rom): ram-node0 @00000000000c3000
  00000000000e4000-00000000000effff (prio 0, ram): ram-node0 @00000000000e4000
  0000000000100000-000000003fffffff (prio 0, ram): ram-node0 @0000000000100000
  0000000040000000-000000007fffffff (prio 0, ram): ram-node1
`;

  it("tells each address's NUMA node from the backend QEMU gives the node", () => {
    const windows = ramWindows(NUMA_MTREE, parseRamblocks(NUMA_RAMBLOCK));
    expect(windows.map((w) => w.block)).toEqual(["ram-node0", "ram-node0", "ram-node0", "ram-node1"]);
    expect(windows[3]?.hva).toBe(0x7f655fc00000n);
    expect(nodeOfAddress(windows, 0x3fffffffn)).toBe(0);
    expect(nodeOfAddress(windows, 0x40000000n)).toBe(1);
    expect(nodeOfAddress(windows, 0x7ffff000n)).toBe(1);
    // a ROM hole and the end of RAM are no node's
    expect(nodeOfAddress(windows, 0xc3000n)).toBeUndefined();
    expect(nodeOfAddress(windows, 0x80000000n)).toBeUndefined();
    // a single-node machine's RAM is node 0
    const one = ramWindows(X86_MTREE, parseRamblocks(X86_RAMBLOCK));
    expect(nodeOfAddress(one, 0x100000000n)).toBe(0);
  });
});
