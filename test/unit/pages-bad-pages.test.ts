// On a guest shared by several pages-* scenarios, each one's "Bad page state" evidence is its
// own: the pfn of every DEBUG_VM report is matched against the blocks each scenario preserved.
import { describe, expect, it } from "vitest";
import { badPagesOf } from "../../src/scenarios/kmod-blocks.js";
import { kernelLinesSinceModule } from "../../src/scenarios/max-order.js";

/** `dmesg | grep -A4 'Bad page state'` as a 7.2.13 x86_64 guest printed it (pages-dma-order9). */
const DMESG = `[    3.500370] BUG: Bad page state in process insmod  pfn:03401
[    3.501003] page: refcount:1 mapcount:0 mapping:0000000000000000 index:0x0 pfn:0x3401
[    3.501916] flags: 0x100000000000000(node=0|zone=1)
[    3.503046] raw: 0100000000000000 ff9cd592400d0048 ff9cd592400d0048 0000000000000000
[    3.503582] raw: 0000000000000000 0000000000000000 00000001ffffffff 0000000000000000
--
[    3.518336] BUG: Bad page state in process insmod  pfn:0a002
[    3.518823] page: refcount:1 mapcount:0 mapping:0000000000000000 index:0x0 pfn:0xa002
[    3.519659] flags: 0x100000000000000(node=0|zone=1)
[    3.520017] raw: 0100000000000000 ff9cd592400d0088 ff9cd592400d0088 0000000000000000
[    3.520539] raw: 0000000000000000 0000000000000000 00000001ffffffff 0000000000000000
`;

const dma = { kind: "dma", order: 9, phys: "0x3400000", seed: 1 }; // pfns 0x3400..0x35ff
const folio = { kind: "folio", order: 9, phys: "0x5000000", seed: 2 }; // pfns 0x5000..0x51ff

describe("Bad page state reports by owner", () => {
  it("gives a report to the scenario whose block holds its pfn", () => {
    const mine = badPagesOf(DMESG, [dma], [dma, folio]);
    expect(mine[0]).toMatch(/pfn:03401/);
    expect(mine).toHaveLength(10); // its own report and the unowned one, five lines each
  });

  it("gives a report no block owns to every scenario, and none of another's", () => {
    const forFolio = badPagesOf(DMESG, [folio], [dma, folio]);
    expect(forFolio.join("\n")).toMatch(/pfn:0a002/);
    expect(forFolio.join("\n")).not.toMatch(/pfn:03401/);
    expect(badPagesOf(DMESG, [dma], [dma, folio]).join("\n")).toMatch(/pfn:0a002/);
  });

  it("finds nothing in a clean dmesg", () => {
    expect(badPagesOf("", [dma], [dma])).toEqual([]);
  });
});

describe("the next kernel's words about a block it refused (pages-next-max-order)", () => {
  it("are KHO's lines after the module began restoring, not the boot's", () => {
    const dmesg = [
      "[    0.000000] Dentry cache hash table entries: 131072 (order: 8, 1048576 bytes, linear)",
      "[    0.000000] KHO: found kexec handover data.",
      "[    2.900000] kho_harness: loading out-of-tree module taints kernel.",
      "[    2.910000] KHO: page at 0x41000000: order 10 exceeds MAX_PAGE_ORDER 9, not restored",
      "[    2.920000] TCP: hash table entries: 512 (order: 1)",
    ].join("\n");
    expect(kernelLinesSinceModule(dmesg)).toEqual(dmesg.split("\n").slice(3));
    expect(kernelLinesSinceModule(dmesg.split("\n").slice(0, 2).join("\n"))).toEqual([]);
  });
});
