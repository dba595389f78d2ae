// The corruption matrix's host side on a synthetic 7.2 handover (test/unit/helpers): the locator
// finds each field where the decoders read it, every case's writes pass the guard and change
// exactly what the case says (judged by the independent decoders, not by the planner), and the
// guard refuses anything outside the handover's structures.
import { describe, expect, it } from "vitest";
import { CASE_IDS, CORRUPT_CASES, MAX_PAGE_ORDER, seededRandom } from "../../src/corrupt/cases.js";
import { guardWrite, type PlannedWrite } from "../../src/corrupt/guard.js";
import { judge, REFUSAL } from "../../src/corrupt/judge.js";
import { locateHandover, type HandoverMap } from "../../src/corrupt/locate.js";
import { parseFdtHeader } from "../../src/fdt/reader.js";
import {
  decodeKho,
  decodeKhoFdt,
  UnsupportedKhoAbiError,
  type LuoState,
  type MemblockState,
} from "../../src/kho/abi.js";
import { walkRadixTree } from "../../src/kho/radix.js";
import { A, FakeMemory, memfdFolioPfns, scenario } from "./helpers/synthetic-handover.js";

const FDT_AT = 0x1001_0000n;
const RAM = [{ start: 0n, end: 0x8000_0000n }];
const RAM_END = 0x8000_0000n;
const SCRATCH = [{ start: 0x2800_0000n, end: 0x2900_0000n }];

async function setup() {
  const s = scenario();
  s.memory.write(FDT_AT, s.blob);
  const map = await locateHandover(s.memory, FDT_AT, s.blob, s.treePages, RAM, SCRATCH);
  return { ...s, map };
}

/** The guest after the writes: a copy of memory, of the root FDT and of the tree pages. */
async function applied(s: Awaited<ReturnType<typeof setup>>, writes: readonly PlannedWrite[]) {
  const mem = s.memory.clone();
  for (const w of writes) mem.write(w.phys, w.bytes);
  const fdt = await mem.readPhys(FDT_AT, s.blob.length);
  const pages = new Map([...s.treePages].map(([k]) => [k, mem.pages.get(k) ?? new Uint8Array(4096)]));
  return { mem, fdt, pages };
}

function planOf(id: string, s: { map: HandoverMap }, seed = 1) {
  const c = CORRUPT_CASES.find((x) => x.id === id);
  if (!c) throw new Error(`no case ${id}`);
  const writes = c.plan(s.map, seededRandom(seed));
  if (typeof writes === "string") throw new Error(`${id}: ${writes}`);
  for (const w of writes) guardWrite(w, s.map.writable);
  return writes;
}

const walk = (root: bigint, pages: Map<bigint, Uint8Array>) =>
  walkRadixTree({
    root,
    readPage: (p) => Promise.resolve(pages.get(p) ?? new Uint8Array(4096)),
    isRam: (p) => p < RAM_END,
  });

const luoOf = async (fdt: Uint8Array, mem: FakeMemory) => {
  const d = await decodeKho(fdt, { memory: mem, isRam: mem.isRam });
  return d.subtrees.find((x) => x.name === "LUO");
};

describe("the corruption matrix (host side)", () => {
  it("locates each field where the decoders read it", async () => {
    const { map, root, memory } = await setup();
    const u64At = async (at: bigint) =>
      new DataView((await memory.readPhys(at, 8)).buffer).getBigUint64(0, true);
    expect(map.compatible).toBe("kho-v4");
    expect(map.radixRoot).toBe(root);
    expect(await u64At(map.mapAt)).toBe(root);
    expect(map.luo?.serAt).toBe(A.luo);
    expect(map.luo?.sessionBlocks).toEqual([A.sessions]);
    expect(map.luo?.sessions.map((x) => [x.name, x.entryAt])).toEqual([
      ["test-session", A.sessions + 16n],
      ["empty", A.sessions + 96n],
    ]);
    const file = map.luo?.sessions[0]?.files[0];
    expect(file).toMatchObject({ entryAt: A.files + 16n, compatible: "memfd-v2", data: A.memfd });
    expect(file?.memfd).toEqual({
      serAt: A.memfd,
      size: 0x3000n,
      nrFolios: 2n,
      firstFolioAt: A.memfdArray,
      firstFolioPfn: memfdFolioPfns[0],
    });
    const region = map.memblock?.regions[0];
    expect(region).toMatchObject({ name: "trace", start: 0x5000_0000n, size: 0x100_0000n });
    expect(await u64At(region?.startAt ?? 0n)).toBe(0x5000_0000n);
    expect(await u64At(region?.sizeAt ?? 0n)).toBe(0x100_0000n);
    expect(map.tables.length).toBeGreaterThan(4);
    expect(map.chunks.length).toBeGreaterThan(10);
  });

  it("every case plans writes inside the handover, and the same seed plans the same writes", async () => {
    const s = await setup();
    for (const id of CASE_IDS) {
      const a = planOf(id, s, 7);
      expect(a.length, id).toBeGreaterThan(0);
      expect(planOf(id, s, 7)).toEqual(a);
    }
  });

  it("noop writes back what is there", async () => {
    const s = await setup();
    for (const w of planOf("noop", s))
      expect(await s.memory.readPhys(w.phys, w.bytes.length)).toEqual(w.bytes);
  });

  it("root FDT cases change the root FDT as they say", async () => {
    const s = await setup();
    const fdtAfter = async (id: string) => (await applied(s, planOf(id, s))).fdt;
    expect(decodeKhoFdt(await fdtAfter("fdt-compatible-old")).abi).toBe("kho-v3");
    expect(() => decodeKhoFdt(s.blob)).not.toThrow();
    const garbage = await fdtAfter("fdt-compatible-garbage");
    expect(() => decodeKhoFdt(garbage)).toThrow(UnsupportedKhoAbiError);
    const cut = await fdtAfter("fdt-totalsize-truncated");
    const header = new DataView(cut.buffer, cut.byteOffset);
    expect(header.getUint32(4, false)).toBe(header.getUint32(8, false) + 8);
    expect(() => parseFdtHeader(cut)).toThrow(/runs past totalsize/);
    expect(decodeKhoFdt(await fdtAfter("fdt-map-outside-ram")).preservedMemoryMap).toBe(
      RAM_END + (1n << 30n),
    );
    expect(decodeKhoFdt(await fdtAfter("fdt-map-unaligned")).preservedMemoryMap).toBe(s.root + 8n);
    expect(decodeKhoFdt(await fdtAfter("fdt-map-not-a-node")).preservedMemoryMap).toBe(
      (memfdFolioPfns[0] ?? 0n) << 12n,
    );
  });

  it("radix cases add chunks of too high an order, past RAM, or a cycle, keeping every chunk there was", async () => {
    const s = await setup();
    const before = await walk(s.root, s.treePages);
    const chunksAfter = async (id: string) => walk(s.root, (await applied(s, planOf(id, s))).pages);
    const key = (c: { phys: bigint; order: number }) => `${c.phys}:${c.order}`;
    const added = (after: Awaited<ReturnType<typeof walk>>) => {
      const had = new Set(before.map(key));
      expect(before.every((c) => after.some((x) => key(x) === key(c)))).toBe(true);
      return after.filter((c) => !had.has(key(c)));
    };
    // the walker refuses the first such chunk: its order is above the maximum, its address beyond
    // the physical address space
    const big = await chunksAfter("radix-order-too-big").then(
      () => "walked",
      (e: Error) => e.message,
    );
    expect(Number(/decodes to an order-(\d+) chunk/.exec(big)?.[1])).toBeGreaterThan(MAX_PAGE_ORDER);
    const past = added(await chunksAfter("radix-frame-outside-ram"));
    expect(past.length).toBeGreaterThan(0);
    expect(past.every((c) => c.phys >= RAM_END && c.order <= MAX_PAGE_ORDER)).toBe(true);
    const inScratch = added(await chunksAfter("radix-scratch-bit"));
    expect(inScratch).toHaveLength(1);
    expect(
      inScratch.every((c) => c.phys >= 0x2800_0000n && c.phys + (4096n << BigInt(c.order)) <= 0x2900_0000n),
    ).toBe(true);
    await expect(chunksAfter("radix-loop")).rejects.toThrow(/points back to an ancestor page \(cycle\)/);
  });

  it("LUO and memblock cases break the field they name, as the decoders see it", async () => {
    const s = await setup();
    const after = async (id: string) => {
      const a = await applied(s, planOf(id, s));
      return {
        luo: await luoOf(a.fdt, a.mem),
        all: await decodeKho(a.fdt, { memory: a.mem, isRam: a.mem.isRam }),
      };
    };
    const error = async (id: string) => (await after(id)).luo?.error?.message;
    expect(await error("luo-compatible")).toMatch(/LUO ABI luo-v4 is not supported/);
    expect(await error("luo-block-count")).toMatch(/block count 52 is not in 1\.\.51/);
    expect(await error("luo-block-loop")).toMatch(/block chain loops/);
    expect(await error("luo-file-count")).toMatch(/says 2 files, blocks hold 1/);
    const handler = (await after("luo-file-handler")).luo?.blob as LuoState | undefined;
    expect(handler?.sessions?.[0]?.files[0]?.compatible).toBe("bogus-v9");
    const sized = (await after("luo-memfd-size")).luo?.blob as LuoState | undefined;
    expect(sized?.sessions?.[0]?.files[0]?.memfd?.size).toBe(0x3000n + (256n << 20n));
    const folio = (await after("luo-folio-unpreserved")).luo?.blob as LuoState | undefined;
    const pfn = folio?.sessions?.[0]?.files[0]?.memfd?.folioList?.[0]?.pfn ?? 0n;
    expect(pfn).not.toBe(memfdFolioPfns[0]);
    expect(
      s.preserved.some((c) => pfn << 12n >= c.phys && pfn << 12n < c.phys + (4096n << BigInt(c.order))),
    ).toBe(false);
    const region = async (id: string) =>
      ((await after(id)).all.subtrees.find((x) => x.name === "memblock")?.blob as MemblockState | undefined)
        ?.regions[0];
    expect((await region("memblock-size"))?.size).toBe(0x400_0000n);
    expect((await region("memblock-outside-ram"))?.start).toBe(RAM_END + (1n << 30n));
  });

  it("the guard refuses a write outside the handover's structures, in one sentence", async () => {
    const { map } = await setup();
    const w = (phys: bigint, n = 8): PlannedWrite => ({ phys, bytes: new Uint8Array(n), what: "test" });
    expect(guardWrite(w(A.luo), map.writable).what).toBe("subtree LUO");
    // a free page, the byte after a structure, a write straddling its end, an empty write
    expect(() => guardWrite(w(0x6000_0000n), map.writable)).toThrow(
      /^refused to write 8 bytes at 0x60000000 \(test\): outside the handover's structures \(nearest: /,
    );
    expect(() => guardWrite(w(A.luo + 32n), map.writable)).toThrow(/outside the handover's structures/);
    expect(() => guardWrite(w(A.luo + 28n), map.writable)).toThrow(/outside the handover's structures/);
    expect(() => guardWrite(w(A.luo, 0), map.writable)).toThrow(/refused an empty write/);
  });

  it("judges the next kernel: fault, refusal, warning, used or not", () => {
    const fault = (kind: string) =>
      judge({ fault: { kind, excerpt: ["x"], message: "m" }, lines: [] }, false);
    expect(fault("panic")).toMatchObject({ outcome: "panic", weakness: true });
    expect(fault("qemu-exited")).toMatchObject({ outcome: "panic", weakness: true });
    expect(fault("oops")).toMatchObject({ outcome: "oops", weakness: true });
    expect(fault("silent")).toMatchObject({ outcome: "hang", weakness: true });
    const restored = { ok: true as const };
    const lost = { ok: false as const, error: "ENOENT" };
    const refused = judge(
      {
        lines: [
          "[    0.000000] KHO: setup: handover FDT (0x1234000) is incompatible with 'kho-v4': 1",
          "[    0.000000] KHO: disabling KHO revival",
        ],
        memfd: lost,
      },
      false,
    );
    expect(refused).toMatchObject({ outcome: "refused", weakness: false });
    expect(refused.evidence[0]).toMatch(/is incompatible with 'kho-v4'/);
    const warnedToo = judge(
      {
        lines: [
          "WARNING: kernel/liveupdate/kexec_handover.c:412 at kho_restore_page+0x5c/0x90, CPU#0: kho-agent/93",
          "memfd_luo: Unable to restore folio at physical address: 4a200000",
        ],
        memfd: lost,
      },
      false,
    );
    expect(warnedToo.outcome).toBe("refused");
    expect(warnedToo.evidence).toContain(
      "WARNING: kernel/liveupdate/kexec_handover.c:412 at kho_restore_page+0x5c/0x90, CPU#0: kho-agent/93",
    );
    expect(judge({ lines: ["WARNING: mm/page_alloc.c:1 at x"], memfd: restored }, false)).toMatchObject({
      outcome: "warned",
      weakness: false,
    });
    const quiet = ["test_kho: KHO restore succeeded", "KHO: exec from: 7.2.13 (count 1)"];
    expect(judge({ lines: quiet, memfd: restored }, false)).toMatchObject({
      outcome: "accepted",
      weakness: true,
    });
    expect(judge({ lines: quiet, memfd: restored }, true)).toMatchObject({
      outcome: "accepted",
      weakness: false,
    });
    const silent = judge({ lines: ["KHO: exec from: 7.2.13 (count 1)"], memfd: lost }, false);
    expect(silent).toMatchObject({ outcome: "refused", weakness: false });
    expect(silent.evidence).toContain("nothing said, nothing used: refused without a word");
    expect(REFUSAL.test("luo: Retrieved live update data, liveupdate number: 1")).toBe(false);
    expect(REFUSAL.test("Revived memory reservation 'harness_rm' from KHO")).toBe(false);
  });
});
