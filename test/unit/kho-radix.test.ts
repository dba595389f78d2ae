import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../src/errors.js";
import {
  type PreservedChunk,
  RadixTreeError,
  UnsupportedKhoAbiError,
  decodeRadixKey,
  encodeRadixKey,
  parseKhoAbi,
  preservedRanges,
  radixGeometry,
  tableShift,
  walkRadixTree,
} from "../../src/kho/radix.js";
import { type EncodedRadixTree, encodeRadixTree, treeMemory } from "./helpers/radix-encoder.js";

const g4k = radixGeometry(12);

const sortChunks = (chunks: readonly PreservedChunk[]): PreservedChunk[] =>
  [...chunks].sort((a, b) => (a.phys < b.phys ? -1 : a.phys > b.phys ? 1 : a.order - b.order));

function walk(tree: EncodedRadixTree, extra: Partial<Parameters<typeof walkRadixTree>[0]> = {}) {
  return walkRadixTree({ root: tree.root, ...treeMemory(tree), ...extra });
}

/** The path of table pages from the root to the leaf holding (phys, order), root first. */
function pathTo(tree: EncodedRadixTree, phys: bigint, order: number): { page: bigint; index: number }[] {
  const key = encodeRadixKey(phys, order, g4k);
  const out: { page: bigint; index: number }[] = [];
  let page = tree.root;
  for (let level = g4k.depth - 1; level >= 1; level--) {
    const index = Number((key >> BigInt(tableShift(level, g4k))) & 511n);
    out.push({ page, index });
    const p = tree.pages.get(page) as Uint8Array;
    page = new DataView(p.buffer).getBigUint64(index * 8, true);
  }
  out.push({ page, index: Number(key & 0x7fffn) });
  return out;
}

function setEntry(tree: EncodedRadixTree, page: bigint, index: number, value: bigint): void {
  const p = tree.pages.get(page) as Uint8Array;
  new DataView(p.buffer).setBigUint64(index * 8, value, true);
}

async function expectRadixError(promise: Promise<unknown>, reason: RegExp): Promise<RadixTreeError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RadixTreeError);
  expect((err as RadixTreeError).reason).toMatch(reason);
  return err as RadixTreeError;
}

describe("KHO radix geometry and keys (abi/kexec_handover.h:259-279)", () => {
  it("has the kernel's constants", () => {
    expect(g4k).toEqual({
      pageShift: 12,
      pageSize: 4096,
      order0Log2: 52,
      tableSizeLog2: 9,
      bitmapSizeLog2: 15,
      depth: 6,
    });
    expect(radixGeometry(14).depth).toBe(5);
    expect(radixGeometry(16).depth).toBe(4);
    expect(radixGeometry(12, "kho-v2").depth).toBe(6);
    expect(radixGeometry(16, "kho-v3").depth).toBe(4);
    expect(() => radixGeometry(14, "kho-v2")).toThrow(/ambiguous/);
    expect(() => radixGeometry(13)).toThrow(DecodeError);
  });

  it("matches the worked examples (KHO-LUO-REFERENCE §1.3)", () => {
    const examples: [bigint, number, bigint, number[], number][] = [
      [0x12345000n, 0, 0x10000000012345n, [2, 0, 0, 0, 2], 9029],
      [0x100000000n, 0, 0x10000000100000n, [2, 0, 0, 0, 32], 0],
      [0x7fe00000n, 1, 0x800000003ff00n, [1, 0, 0, 0, 7], 32512],
      [0x40200000n, 9, 0x80000000201n, [0, 2, 0, 0, 0], 513],
      [0x40000000n, 18, 0x400000001n, [0, 0, 2, 0, 0], 1],
    ];
    for (const [phys, order, key, levels, bit] of examples) {
      expect(encodeRadixKey(phys, order, g4k)).toBe(key);
      expect(decodeRadixKey(key, g4k)).toEqual({ phys, order });
      expect([5, 4, 3, 2, 1].map((l) => Number((key >> BigInt(tableShift(l, g4k))) & 511n))).toEqual(levels);
      expect(Number(key & 0x7fffn)).toBe(bit);
    }
    expect(decodeRadixKey(0n, g4k)).toBeUndefined();
    expect(decodeRadixKey(1n << 53n, g4k)).toBeUndefined();
  });

  it("names the supported versions when refusing one", () => {
    expect(parseKhoAbi("kho-v3")).toBe("kho-v3");
    expect(() => parseKhoAbi("kho-v1")).toThrow(UnsupportedKhoAbiError);
    expect(() => parseKhoAbi("kho-v1")).toThrow(
      "KHO ABI kho-v1 is not supported by this harness (supported: kho-v4, kho-v3, kho-v2)",
    );
  });

  it("merges chunks into ranges", () => {
    const ranges = preservedRanges([
      { phys: 0x1000n, order: 0 },
      { phys: 0x2000n, order: 1 },
      { phys: 0x8000n, order: 0 },
    ]);
    expect(ranges).toEqual([
      { start: 0x1000n, end: 0x4000n },
      { start: 0x8000n, end: 0x9000n },
    ]);
  });
});

/** Naturally aligned chunks below 2^52, biased towards guest-sized addresses. */
const chunkArb = (pageShift: number, maxOrder: number): fc.Arbitrary<PreservedChunk> =>
  fc.integer({ min: 0, max: maxOrder }).chain((order) => {
    const bits = (topBit: number): bigint => (1n << BigInt(Math.max(0, topBit - pageShift - order))) - 1n;
    return fc
      .oneof(fc.bigInt({ min: 0n, max: bits(34) }), fc.bigInt({ min: 0n, max: bits(52) }))
      .map((index) => ({ phys: index << BigInt(pageShift + order), order }));
  });

const chunkSetArb = (pageShift: number, maxOrder: number): fc.Arbitrary<PreservedChunk[]> =>
  fc.uniqueArray(chunkArb(pageShift, maxOrder), { selector: (c) => `${c.phys}:${c.order}`, maxLength: 40 });

describe("KHO radix tree walk", () => {
  it("round-trips any set of chunks through the kernel's encoding (4K pages)", async () => {
    await fc.assert(
      fc.asyncProperty(chunkSetArb(12, 30), async (chunks) => {
        const tree = encodeRadixTree(chunks);
        expect(await walk(tree)).toEqual(sortChunks(chunks));
      }),
      { numRuns: 150 },
    );
  });

  it("round-trips with 16K and 64K pages and for kho-v2/v3", async () => {
    await fc.assert(
      fc.asyncProperty(chunkSetArb(16, 20), async (chunks) => {
        const tree = encodeRadixTree(chunks, { pageShift: 16 });
        expect(await walk(tree, { pageShift: 16, abi: "kho-v2" })).toEqual(sortChunks(chunks));
      }),
      { numRuns: 40 },
    );
    await fc.assert(
      fc.asyncProperty(chunkSetArb(14, 20), async (chunks) => {
        const tree = encodeRadixTree(chunks, { pageShift: 14 });
        expect(await walk(tree, { pageShift: 14 })).toEqual(sortChunks(chunks));
      }),
      { numRuns: 40 },
    );
    const chunks = [{ phys: 0x4000_0000n, order: 18 }];
    expect(await walk(encodeRadixTree(chunks), { abi: "kho-v3" })).toEqual(chunks);
  });

  it("walks an empty tree and a tree of one page per level", async () => {
    expect(await walk(encodeRadixTree([]))).toEqual([]);
    const tree = encodeRadixTree([{ phys: 0x12345000n, order: 0 }]);
    expect(tree.pages.size).toBe(6);
    expect(await walk(tree)).toEqual([{ phys: 0x12345000n, order: 0 }]);
  });

  describe("corrupt trees are typed errors naming the table", () => {
    const chunk = { phys: 0x12345000n, order: 0 };
    const fresh = (): { tree: EncodedRadixTree; path: { page: bigint; index: number }[] } => {
      const tree = encodeRadixTree([chunk, { phys: 0x4000_0000n, order: 9 }]);
      return { tree, path: pathTo(tree, chunk.phys, chunk.order) };
    };

    it("cycle: a table pointing back at the root", async () => {
      const { tree, path } = fresh();
      const level4 = path[1]?.page as bigint;
      setEntry(tree, level4, 5, tree.root);
      const err = await expectRadixError(walk(tree), /entry 5 .* points back to an ancestor page \(cycle\)/);
      expect(err).toBeInstanceOf(DecodeError);
      expect(err).toMatchObject({ tablePhys: level4, level: 4, offset: 40 });
    });

    it("a page used twice", async () => {
      const { tree, path } = fresh();
      const level1 = path[4] as { page: bigint; index: number };
      setEntry(tree, level1.page, level1.index + 1, path[5]?.page as bigint);
      const err = await expectRadixError(walk(tree), /already used elsewhere/);
      expect(err).toMatchObject({ tablePhys: level1.page, level: 1 });
    });

    it("a pointer outside RAM", async () => {
      const { tree, path } = fresh();
      setEntry(tree, path[2]?.page as bigint, 7, 0x1_0000_0000n);
      await expectRadixError(walk(tree), /entry 7 \(0x100000000\) points outside RAM/);
    });

    it("a misaligned pointer", async () => {
      const { tree, path } = fresh();
      const level1 = path[4] as { page: bigint; index: number };
      setEntry(tree, level1.page, level1.index, (path[5]?.page as bigint) + 8n);
      const err = await expectRadixError(walk(tree), /is not page-aligned/);
      expect(err).toMatchObject({ tablePhys: level1.page, level: 1, offset: level1.index * 8 });
    });

    it("reserved bits in a pointer", async () => {
      const { tree, path } = fresh();
      const level3 = path[2] as { page: bigint; index: number };
      const child = path[3]?.page as bigint;
      setEntry(tree, level3.page, level3.index, child | (1n << 60n));
      await expectRadixError(walk(tree), /sets reserved bits above bit 51/);
    });

    it("a root slot that sets key bits above the order bit", async () => {
      const { tree, path } = fresh();
      setEntry(tree, tree.root, 4, path[1]?.page as bigint);
      const err = await expectRadixError(walk(tree), /entry 4 is set but its index sets reserved key bits/);
      expect(err).toMatchObject({ tablePhys: tree.root, level: 5, offset: 32 });
    });

    it("leaf bits that decode to no order or to an order beyond the address space", async () => {
      // Order 30 at 0 uses root slot 0 and level-1 slot 128; a leaf in slot 0 gets key 0 + bit.
      for (const [bit, reason] of [
        [0, /key 0x0\) has no order bit/],
        [1, /order-52 chunk at 0x0 beyond the physical address space/],
      ] as const) {
        const tree = encodeRadixTree([{ phys: 0n, order: 30 }]);
        const level1 = pathTo(tree, 0n, 30)[4]?.page as bigint;
        const leaf = 0x6000_0000n;
        tree.pages.set(leaf, new Uint8Array(4096));
        (tree.pages.get(leaf) as Uint8Array)[0] = 1 << bit;
        setEntry(tree, level1, 0, leaf);
        const err = await expectRadixError(walk(tree), reason);
        expect(err).toMatchObject({ tablePhys: leaf, level: 0 });
      }
    });

    it("bad roots, short reads and size limits", async () => {
      const { tree } = fresh();
      await expectRadixError(walk(tree, { root: 0n }), /preserved-memory-map is 0/);
      await expectRadixError(walk(tree, { root: tree.root + 16n }), /root pointer is not page-aligned/);
      await expectRadixError(walk(tree, { root: 0x9000_0000n }), /root pointer points outside RAM/);
      await expectRadixError(
        walk(tree, { readPage: () => Promise.resolve(new Uint8Array(100)) }),
        /read returned 100 bytes/,
      );
      await expectRadixError(walk(tree, { maxPages: 4 }), /more than 4 pages/);
      await expectRadixError(walk(tree, { maxChunks: 1 }), /more than 1 chunks/);
    });
  });

  it("fuzz: random damage to tree pages gives a RadixTreeError or a result, and terminates", async () => {
    const base = encodeRadixTree([
      { phys: 0x12345000n, order: 0 },
      { phys: 0x7fe00000n, order: 1 },
      { phys: 0x40200000n, order: 9 },
      { phys: 0x40000000n, order: 18 },
    ]);
    const pageList = [...base.pages.keys()];
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            page: fc.nat({ max: pageList.length - 1 }),
            word: fc.nat({ max: 511 }),
            value: fc.oneof(
              fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
              fc.constantFrom(...pageList),
              fc.constantFrom(...pageList).map((p) => p + 8n),
            ),
          }),
          { minLength: 1, maxLength: 6 },
        ),
        async (edits) => {
          const tree = { ...base, pages: new Map([...base.pages].map(([k, v]) => [k, v.slice()])) };
          for (const e of edits) setEntry(tree, pageList[e.page] as bigint, e.word, e.value);
          try {
            await walk(tree);
          } catch (err) {
            if (!(err instanceof RadixTreeError)) throw err;
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
