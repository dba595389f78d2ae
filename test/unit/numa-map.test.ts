// Golden vector: a real 2-node guest's handover (numa-pages on x86_64, see test/fixtures/README.md):
// the old kernel's radix tree as the host read it before the kexec, the test module's status
// (each block's frame and node as the guest allocated it) and QEMU's RAM windows. Decoded here,
// every block is in a chunk on the node the guest put it on, and no chunk lies on two nodes.
import { readFile } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { KmodStatusSchema } from "../../src/agent/kmod-protocol.js";
import { walkRadixTree } from "../../src/kho/radix.js";
import { chunkAt, chunkNodes, chunksAcrossNodes } from "../../src/memory/numa-map.js";
import type { RamWindow } from "../../src/vm/guest-ram.js";

const fixture = (name: string) => readFile(new URL(`../fixtures/numa/${name}`, import.meta.url));

interface SnapshotJson {
  abi: "kho-v4";
  root: string;
  ram: { start: string; end: string }[];
  pages: { phys: string; base64: string }[];
}

async function recorded() {
  const snap = JSON.parse(
    gunzipSync(await fixture("x86_64-radix-before-kexec.json.gz")).toString(),
  ) as SnapshotJson;
  const pages = new Map(
    snap.pages.map((p) => [BigInt(p.phys), new Uint8Array(Buffer.from(p.base64, "base64"))]),
  );
  const ram = snap.ram.map((r) => ({ start: BigInt(r.start), end: BigInt(r.end) }));
  const chunks = await walkRadixTree({
    root: BigInt(snap.root),
    abi: snap.abi,
    readPage: (paddr) => {
      const page = pages.get(paddr);
      return page
        ? Promise.resolve(page)
        : Promise.reject(new Error(`no page 0x${paddr.toString(16)} recorded`));
    },
    isRam: (paddr) => ram.some((r) => paddr >= r.start && paddr < r.end),
  });
  const windows = (
    JSON.parse((await fixture("x86_64-qemu-ram-windows.json")).toString()) as {
      start: string;
      end: string;
      block: string;
    }[]
  ).map((w): RamWindow => ({ start: BigInt(w.start), end: BigInt(w.end), hva: 0n, block: w.block }));
  const status = KmodStatusSchema.parse(JSON.parse((await fixture("x86_64-kmod-status.json")).toString()));
  const blocks = status.entries.flatMap((g) =>
    (g.phys ?? []).map((phys, i) => ({ phys: BigInt(phys), nid: g.nids?.[i], asked: g.node })),
  );
  return { chunks, windows, blocks };
}

describe("a recorded 2-node guest's handover", () => {
  it("puts every block of the test module in a chunk on the node the guest allocated it on", async () => {
    const { chunks, windows, blocks } = await recorded();
    const nodes = chunkNodes(chunks, windows);
    expect(blocks).toHaveLength(18);
    expect(new Set(blocks.map((b) => b.asked))).toEqual(new Set([0, 1]));
    for (const b of blocks) {
      expect(b.nid).toBe(b.asked);
      expect(chunkAt(nodes, b.phys)?.first, `block at 0x${b.phys.toString(16)}`).toBe(b.asked);
    }
  });

  it("has no chunk on two nodes, and chunks on both", async () => {
    const { chunks, windows } = await recorded();
    const nodes = chunkNodes(chunks, windows);
    expect(chunksAcrossNodes(nodes)).toEqual([]);
    const perNode = new Map<number | undefined, number>();
    for (const n of nodes) perNode.set(n.first, (perNode.get(n.first) ?? 0) + 1);
    expect(perNode.get(0)).toBeGreaterThan(0);
    expect(perNode.get(1)).toBeGreaterThan(0);
    expect(perNode.has(undefined)).toBe(false);
  });

  it("tells a chunk across the node boundary, and one outside RAM", () => {
    const windows: RamWindow[] = [
      { start: 0n, end: 0x40000000n, hva: 0n, block: "ram-node0" },
      { start: 0x40000000n, end: 0x80000000n, hva: 0n, block: "ram-node1" },
    ];
    const across = chunkNodes(
      [
        { phys: 0x3fe00000n, order: 10 }, // 4 MiB from 2 MiB below the boundary
        { phys: 0x3fe00000n, order: 9 },
        { phys: 0x80000000n, order: 0 },
      ],
      windows,
    );
    expect(chunksAcrossNodes(across).map((n) => [n.chunk.phys, n.first, n.last])).toEqual([
      [0x3fe00000n, 0, 1],
      [0x80000000n, undefined, undefined],
    ]);
  });
});
