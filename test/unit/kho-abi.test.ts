import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../src/errors.js";
import type { FdtNodeInput } from "../../src/fdt/reader.js";
import { cells, fdtNode, leU64, strings, writeFdt } from "../../src/fdt/writer.js";
import {
  type DecodedKho,
  type KexecMetadata,
  KhoBlobError,
  type KhoTestState,
  type LuoState,
  type MemblockState,
  UnsupportedKhoAbiError,
  decodeKho,
  decodeKhoFdt,
  formatKhoTree,
  toJson,
} from "../../src/kho/abi.js";
import { A, FakeMemory, khoTestFolios, scenario, struct } from "./helpers/synthetic-handover.js";

const blobOf = <K extends string>(d: DecodedKho, name: string, kind: K) => {
  const sub = d.subtrees.find((s) => s.name === name);
  expect(sub?.error).toBeUndefined();
  expect(sub?.blob?.kind).toBe(kind);
  return sub?.blob;
};

describe("KHO root FDT", () => {
  it("matches the kernel's byte layout (233 bytes, memory map at offset 96; 345 with kho_test and LUO)", () => {
    const sub = (name: string): FdtNodeInput =>
      fdtNode(name, { "preserved-data": leU64(0x1000n), "blob-size": leU64(73n) });
    const root = (children: FdtNodeInput[]): FdtNodeInput =>
      fdtNode(
        "",
        { compatible: strings("kho-v4"), "preserved-memory-map": leU64(0x8877_6655_4433_2211n) },
        children,
      );
    const small = writeFdt(root([sub("kexec-metadata")]));
    expect(small.length).toBe(233);
    expect(new DataView(small.buffer).getBigUint64(96, true)).toBe(0x8877_6655_4433_2211n);
    expect(writeFdt(root([sub("LUO"), sub("kho_test"), sub("kexec-metadata")])).length).toBe(345);
  });

  it("decodes compatible, memory map and subtrees without guest memory", () => {
    const { blob } = scenario();
    const d = decodeKhoFdt(blob);
    expect(d.abi).toBe("kho-v4");
    expect(d.preservedMemoryMap).toBe(0x7000_0000n);
    expect(d.subtrees.map((s) => [s.name, s.phys, s.size])).toEqual([
      ["foo", A.foo, 5n],
      ["LUO", A.luo, 32n],
      ["memblock", A.memblock, expect.any(BigInt) as bigint],
      ["kho_test", A.khoTest, expect.any(BigInt) as bigint],
      ["kexec-metadata", A.metadata, 73n],
    ]);
  });

  it("refuses ABIs it does not know, listing the supported ones", () => {
    for (const compat of ["kho-v1", "kho-v5", "something-else"]) {
      const blob = writeFdt(
        fdtNode("", { compatible: strings(compat), "preserved-memory-map": leU64(0x1000n) }),
      );
      expect(() => decodeKhoFdt(blob)).toThrow(UnsupportedKhoAbiError);
      expect(() => decodeKhoFdt(blob)).toThrow(
        `KHO ABI ${compat} is not supported by this harness (supported: kho-v4, kho-v3, kho-v2)`,
      );
    }
  });

  it("reads kho-v2 trees, whose subtrees have no blob-size", async () => {
    const { memory } = scenario();
    const blob = writeFdt(
      fdtNode("", { compatible: strings("kho-v2"), "preserved-memory-map": leU64(0x7000_0000n) }, [
        fdtNode("memblock", { "preserved-data": leU64(A.memblock) }),
      ]),
    );
    const d = await decodeKho(blob, { memory, isRam: memory.isRam });
    expect(d.subtrees[0]?.size).toBeUndefined();
    expect((blobOf(d, "memblock", "memblock") as MemblockState).regions[0]?.name).toBe("trace");
  });

  it("rejects malformed root properties with DecodeErrors", () => {
    const make = (rootProps: Record<string, Uint8Array>, children: FdtNodeInput[] = []): Uint8Array =>
      writeFdt(fdtNode("", rootProps, children));
    const compat = strings("kho-v4");
    expect(() => decodeKhoFdt(make({ "preserved-memory-map": leU64(1n) }))).toThrow(
      /root node has no compatible/,
    );
    expect(() => decodeKhoFdt(make({ compatible: compat, "preserved-memory-map": cells(0x1000) }))).toThrow(
      /preserved-memory-map is 4 bytes, expected 8/,
    );
    expect(() => decodeKhoFdt(make({ compatible: compat, "preserved-memory-map": leU64(0n) }))).toThrow(
      /preserved-memory-map is 0/,
    );
    expect(() => decodeKhoFdt(make({ compatible: compat }))).toThrow(
      /has no property "preserved-memory-map"/,
    );
    const noSize = fdtNode("x", { "preserved-data": leU64(0x1000n) });
    const err = (() => {
      try {
        decodeKhoFdt(make({ compatible: compat, "preserved-memory-map": leU64(1n << 12n) }, [noSize]));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).reason).toMatch(/\/x has no property "blob-size"/);
  });
});

describe("KHO sub-blobs from guest memory", () => {
  it("decodes every subtree and walks the preserved memory map", async () => {
    const { blob, memory, preserved } = scenario();
    const d = await decodeKho(blob, { memory, isRam: memory.isRam });

    expect(blobOf(d, "kexec-metadata", "kexec-metadata") as KexecMetadata).toEqual({
      kind: "kexec-metadata",
      version: 1,
      previousRelease: "7.2.13",
      kexecCount: 2,
    });
    expect((blobOf(d, "memblock", "memblock") as MemblockState).regions).toEqual([
      { name: "trace", start: 0x5000_0000n, size: 0x100_0000n },
    ]);
    const khoTest = blobOf(d, "kho_test", "kho-test") as KhoTestState;
    expect(khoTest).toMatchObject({
      nrFolios: 3,
      csum: 0xbeef,
      foliosInfo: { first: A.khoTestChunk, totalPages: 1 },
    });
    expect(khoTest.folios).toEqual(khoTestFolios);

    const luo = blobOf(d, "LUO", "luo") as LuoState;
    expect(luo).toMatchObject({
      compatible: "luo-v5",
      liveupdateNum: 3n,
      sessionsPa: A.sessions,
      flbsPa: A.flbs,
    });
    expect(luo.sessions?.map((s) => [s.name, s.files.length])).toEqual([
      ["test-session", 1],
      ["empty", 0],
    ]);
    const file = luo.sessions?.[0]?.files[0];
    expect(file).toMatchObject({ compatible: "memfd-v2", data: A.memfd, token: 0x1an });
    expect(file?.memfd).toMatchObject({ pos: 5n, size: 0x3000n, seals: 5, flags: 0, nrFolios: 2n });
    expect(file?.memfd?.folioList).toEqual([
      { pfn: 0x20000n, flags: 3, index: 0n },
      { pfn: 0x20200n, flags: 3, index: 1n },
    ]);
    expect(luo.flbs).toEqual([{ name: "liveupdate-test-flb-v0", data: 0xfeedf00dcafebee0n, count: 1n }]);
    expect(d.subtrees.find((s) => s.name === "foo")?.blob).toEqual({
      kind: "unknown",
      head: new Uint8Array([1, 2, 3, 4, 5]),
    });

    expect(d.preservedMemoryError).toBeUndefined();
    const sorted = [...preserved].sort((a, b) => (a.phys < b.phys ? -1 : a.phys > b.phys ? 1 : 0));
    expect(d.preservedMemory).toEqual(sorted);
    // What a guest test asserts: every folio the consumers recorded is in the map with its order.
    const inMap = new Set(d.preservedMemory?.map((c) => `${c.phys}:${c.order}`));
    for (const f of khoTest.folios ?? []) expect(inMap.has(`${f.phys}:${f.order}`)).toBe(true);
    for (const f of file?.memfd?.folioList ?? []) expect(inMap.has(`${f.pfn << 12n}:0`)).toBe(true);
  });

  it("formats a readable tree", async () => {
    const { blob, memory } = scenario();
    const text = formatKhoTree(await decodeKho(blob, { memory, isRam: memory.isRam }));
    for (const line of [
      `KHO root FDT: kho-v4 (${blob.length} bytes)`,
      "  preserved-memory-map = 0x70000000",
      "  preserved memory: 18 chunks,",
      "  /kexec-metadata: blob at 0x10000000, 73 bytes",
      'kexec-metadata v1: previous release "7.2.13", kexec count 2',
      "luo-v5: liveupdate number 3, sessions at 0x10002000, FLBs at 0x10003000",
      'session "test-session": 1 file(s)',
      "token 0x1a memfd-v2 data 0x10005000: size 12288, pos 5, seals SEAL|GROW, 2 folio(s)",
      'FLB "liveupdate-test-flb-v0": data 0xfeedf00dcafebee0, 1 file(s)',
      '"trace": 0x50000000 + 0x1000000 (16 MiB)',
      "kho-test-v1: 3 folios, csum 0xbeef, folio list at 0x1000a000",
      "orders: 1x order 0, 1x order 2, 1x order 9",
      "weird = 010203 (raw)",
      "unknown blob, first bytes 0102030405",
    ]) {
      expect(text).toContain(line);
    }
  });

  it("produces JSON for `kho inspect-fdt --json`", async () => {
    const { blob, memory } = scenario();
    const json = toJson(await decodeKho(blob, { memory, isRam: memory.isRam }));
    const parsed = JSON.parse(JSON.stringify(json)) as {
      abi: string;
      preservedMemoryMap: string;
      nodes: {
        path: string;
        properties: Record<string, { type: string; value: string }>;
        blob?: { kind: string };
      }[];
      preservedMemory: { chunks: unknown[]; ranges: unknown[] };
    };
    expect(parsed.abi).toBe("kho-v4");
    expect(parsed.nodes.map((n) => n.path)).toEqual([
      "/",
      "/foo",
      "/LUO",
      "/memblock",
      "/kho_test",
      "/kexec-metadata",
    ]);
    expect(parsed.nodes[0]?.properties).toEqual({
      compatible: { type: "string", value: "kho-v4" },
      "preserved-memory-map": { type: "u64le", value: "0x70000000" },
    });
    expect(parsed.nodes[1]?.properties).toEqual({
      "preserved-data": { type: "u64le", value: "0x1000c000" },
      "blob-size": { type: "u64le", value: "0x5" },
      weird: { type: "raw", value: "010203" },
    });
    expect(parsed.nodes.map((n) => n.blob?.kind)).toEqual([
      undefined,
      "unknown",
      "luo",
      "memblock",
      "kho-test",
      "kexec-metadata",
    ]);
    expect(parsed.preservedMemory.chunks).toHaveLength(18);
    // Without memory there is nothing but the FDT.
    expect(toJson(await decodeKho(blob))).not.toHaveProperty("preservedMemory");
  });

  it("keeps decoding the other subtrees when one blob is corrupt", async () => {
    const cases: [string, (m: FakeMemory) => void, RegExp][] = [
      ["LUO", (m) => m.write(A.sessions, struct(8, [[0, "u64", A.sessions]])), /block chain loops/],
      [
        "LUO",
        (m) => m.write(A.sessions + 16n + 72n, struct(8, [[0, "u64", 2]])),
        /says 2 files, blocks hold 1/,
      ],
      ["LUO", (m) => m.write(A.files + 8n, struct(8, [[0, "u64", 64]])), /block count 64 is not in 1..63/],
      ["LUO", (m) => m.write(A.luo, struct(8, [[0, "chars", "luo-v4"]])), /LUO ABI luo-v4 is not supported/],
      ["LUO", (m) => m.write(A.memfdChunk, struct(8, [[0, "u64", A.memfdChunk]])), /chunk list loops/],
      [
        "LUO",
        (m) => m.write(A.memfd + 40n, struct(4, [[0, "u32", 2]])),
        /chunks hold 1 pages, total_pages is 2/,
      ],
      [
        "kexec-metadata",
        (m) => m.write(A.metadata, struct(4, [[0, "u32", 2]])),
        /version 2 is not supported/,
      ],
      ["kho_test", (m) => m.write(A.khoTest, new Uint8Array(8)), /fdt: bad magic/],
    ];
    for (const [name, corrupt, reason] of cases) {
      const { blob, memory } = scenario();
      corrupt(memory);
      const d = await decodeKho(blob, { memory, isRam: memory.isRam });
      const sub = d.subtrees.find((s) => s.name === name);
      expect(sub?.error?.message, reason.source).toMatch(reason);
      expect(d.subtrees.filter((s) => s.error)).toHaveLength(1);
      if (sub?.error instanceof KhoBlobError) expect(sub.error.phys).toBeGreaterThan(0n);
      expect(formatKhoTree(d)).toContain("undecodable: ");
    }
    const { blob, memory } = scenario();
    const limited = await decodeKho(blob, { memory, maxBlobSize: 64 });
    expect(limited.subtrees.find((s) => s.name === "memblock")?.error?.message).toMatch(
      /exceeds the 64-byte limit/,
    );
    const noTree = await decodeKho(blob, { memory, isRam: () => false });
    expect(noTree.preservedMemoryError?.message).toMatch(/root pointer points outside RAM/);
  });

  it("fuzz: damaged root FDTs and damaged guest memory give DecodeErrors only", async () => {
    const { blob, memory } = scenario();
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: blob.length - 1 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 6,
        }),
        (edits) => {
          const b = blob.slice();
          for (const [at, v] of edits) b[at] = v;
          try {
            decodeKhoFdt(b);
          } catch (err) {
            if (!(err instanceof DecodeError)) throw err;
          }
        },
      ),
      { numRuns: 300 },
    );
    const targets = [A.luo, A.sessions, A.files, A.memfd, A.memfdChunk, A.flbs, A.khoTest, A.khoTestChunk];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...targets),
        fc.nat({ max: 200 }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        async (page, at, value) => {
          const m = memory.clone();
          m.write(page + BigInt(at & ~7), struct(8, [[0, "u64", value]]));
          // Errors are captured per subtree; only non-DecodeErrors would escape.
          await decodeKho(blob, { memory: m, isRam: m.isRam });
        },
      ),
      { numRuns: 150 },
    );
  });
});
