// A synthetic kho-v4 handover as a 7.2 kernel with test_kho, LUO (one memfd), reserve_mem and an
// unknown user builds it: the root FDT, the radix tree (built by the test-only encoder) and every
// subtree's bytes in a sparse fake guest memory. Shared by the decoder and corruption tests.
import { DecodeError } from "../../../src/errors.js";
import type { FdtNodeInput } from "../../../src/fdt/reader.js";
import { fdtNode, leU32, leU64, strings, writeFdt } from "../../../src/fdt/writer.js";
import type { PhysMemory } from "../../../src/kho/abi.js";
import type { PreservedChunk } from "../../../src/kho/radix.js";
import { encodeRadixTree } from "./radix-encoder.js";

const PAGE = 4096n;

/** Sparse guest memory: whole pages, unmapped reads are DecodeErrors (like ElfReader's). */
export class FakeMemory implements PhysMemory {
  readonly pages = new Map<bigint, Uint8Array>();

  write(paddr: bigint, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length;) {
      const addr = paddr + BigInt(done);
      const base = addr & ~(PAGE - 1n);
      let page = this.pages.get(base);
      if (!page) this.pages.set(base, (page = new Uint8Array(4096)));
      const into = Number(addr - base);
      const take = Math.min(4096 - into, bytes.length - done);
      page.set(bytes.subarray(done, done + take), into);
      done += take;
    }
  }

  readPhys(paddr: bigint, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    for (let done = 0; done < length;) {
      const addr = paddr + BigInt(done);
      const base = addr & ~(PAGE - 1n);
      const page = this.pages.get(base);
      if (!page)
        return Promise.reject(new DecodeError("test-memory", 0, `0x${addr.toString(16)} is unmapped`));
      const into = Number(addr - base);
      const take = Math.min(4096 - into, length - done);
      out.set(page.subarray(into, into + take), done);
      done += take;
    }
    return Promise.resolve(out);
  }

  isRam = (paddr: bigint): boolean => this.pages.has(paddr);

  clone(): FakeMemory {
    const copy = new FakeMemory();
    for (const [k, v] of this.pages) copy.pages.set(k, v.slice());
    return copy;
  }
}

/** Packed little-endian struct builder. */
export function struct(
  size: number,
  fields: [number, "u16" | "u32" | "u64" | "chars", number | bigint | string][],
): Uint8Array {
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  for (const [at, type, value] of fields) {
    if (type === "u16") v.setUint16(at, Number(value), true);
    else if (type === "u32") v.setUint32(at, Number(value), true);
    else if (type === "u64") v.setBigUint64(at, BigInt(value), true);
    else out.set(new TextEncoder().encode(String(value)), at); // char[] field
  }
  return out;
}

export const A = {
  metadata: 0x1000_0000n,
  luo: 0x1000_1000n,
  sessions: 0x1000_2000n,
  flbs: 0x1000_3000n,
  files: 0x1000_4000n,
  memfd: 0x1000_5000n,
  memfdChunk: 0x1000_6000n,
  memfdArray: 0x1000_7000n,
  memblock: 0x1000_8000n,
  khoTest: 0x1000_9000n,
  khoTestChunk: 0x1000_a000n,
  khoTestArray: 0x1000_b000n,
  foo: 0x1000_c000n,
};

export const khoTestFolios: PreservedChunk[] = [
  { phys: 0x3000_0000n, order: 0 },
  { phys: 0x3020_0000n, order: 9 },
  { phys: 0x3100_0000n, order: 2 },
];
export const memfdFolioPfns = [0x20000n, 0x20200n];

export interface Scenario {
  blob: Uint8Array;
  memory: FakeMemory;
  preserved: PreservedChunk[];
  /** The radix tree's pages by physical address, and its root. */
  treePages: Map<bigint, Uint8Array>;
  root: bigint;
}

/** A kho-v4 handover as a 7.2 kernel with test_kho, LUO (one memfd), reserve_mem and an unknown user builds it. */
export function scenario(): Scenario {
  const m = new FakeMemory();
  m.write(
    A.metadata,
    struct(73, [
      [0, "u32", 1],
      [4, "chars", "7.2.13"],
      [69, "u32", 2],
    ]),
  );
  m.write(
    A.luo,
    struct(32, [
      [0, "chars", "luo-v5"],
      [8, "u64", 3],
      [16, "u64", A.sessions],
      [24, "u64", A.flbs],
    ]),
  );
  // Session block: header {next, count} then 80-byte luo_session_ser entries.
  m.write(
    A.sessions,
    struct(16 + 160, [
      [8, "u64", 2],
      [16, "chars", "test-session"],
      [16 + 64, "u64", A.files],
      [16 + 72, "u64", 1],
      [96, "chars", "empty"],
      [96 + 64, "u64", 0],
      [96 + 72, "u64", 0],
    ]),
  );
  m.write(
    A.files,
    struct(16 + 64, [
      [8, "u64", 1],
      [16, "chars", "memfd-v2"],
      [64, "u64", A.memfd],
      [72, "u64", 0x1a],
    ]),
  );
  m.write(
    A.memfd,
    struct(48, [
      [0, "u64", 5],
      [8, "u64", 0x3000],
      [16, "u32", 0x5],
      [24, "u64", 2],
      [32, "u64", A.memfdChunk],
      [40, "u32", 1],
      [44, "u16", 1],
      [46, "u16", 0],
    ]),
  );
  m.write(A.memfdChunk, struct(16, [[8, "u64", A.memfdArray]]));
  m.write(
    A.memfdArray,
    struct(32, [
      [0, "u64", (3n << 52n) | (memfdFolioPfns[0] ?? 0n)],
      [8, "u64", 0],
      [16, "u64", (3n << 52n) | (memfdFolioPfns[1] ?? 0n)],
      [24, "u64", 1],
    ]),
  );
  m.write(
    A.flbs,
    struct(16 + 64, [
      [0, "u64", 1],
      [8, "u64", 1],
      [16, "chars", "liveupdate-test-flb-v0"],
      [64, "u64", 0xfeedf00dcafebee0n],
      [72, "u64", 1],
    ]),
  );
  const memblock = writeFdt(
    fdtNode("", { compatible: strings("memblock-v1") }, [
      fdtNode("trace", {
        compatible: strings("reserve-mem-v1"),
        start: leU64(0x5000_0000n),
        size: leU64(0x100_0000n),
      }),
    ]),
  );
  m.write(A.memblock, memblock);
  const khoTest = writeFdt(
    fdtNode("", { compatible: strings("kho-test-v1"), magic: leU32(0x4b484f21) }, [
      fdtNode("data", {
        nr_folios: leU32(3),
        folios_info: struct(16, [
          [0, "u64", A.khoTestChunk],
          [8, "u32", 1],
          [12, "u16", 1],
          [14, "u16", 0],
        ]),
        csum: leU32(0xbeef),
      }),
    ]),
  );
  m.write(A.khoTest, khoTest);
  m.write(A.khoTestChunk, struct(16, [[8, "u64", A.khoTestArray]]));
  m.write(
    A.khoTestArray,
    struct(
      24,
      khoTestFolios.map((f, i): [number, "u64", bigint] => [i * 8, "u64", f.phys | BigInt(f.order)]),
    ),
  );
  m.write(A.foo, new Uint8Array([1, 2, 3, 4, 5]));

  // What the kernel preserves: every blob/chunk page as order 0, plus the data folios.
  const preserved: PreservedChunk[] = [
    ...Object.values(A).map((phys) => ({ phys, order: 0 })),
    ...khoTestFolios,
    ...memfdFolioPfns.map((pfn) => ({ phys: pfn << 12n, order: 0 })),
  ];
  const tree = encodeRadixTree(preserved, { allocBase: 0x7000_0000n });
  for (const [addr, page] of tree.pages) m.write(addr, page);

  const sub = (
    name: string,
    phys: bigint,
    size: number,
    extra: Record<string, Uint8Array> = {},
  ): FdtNodeInput =>
    fdtNode(name, { "preserved-data": leU64(phys), "blob-size": leU64(BigInt(size)), ...extra });
  const blob = writeFdt(
    fdtNode("", { compatible: strings("kho-v4"), "preserved-memory-map": leU64(tree.root) }, [
      sub("foo", A.foo, 5, { weird: new Uint8Array([1, 2, 3]) }),
      sub("LUO", A.luo, 32),
      sub("memblock", A.memblock, memblock.length),
      sub("kho_test", A.khoTest, khoTest.length),
      sub("kexec-metadata", A.metadata, 73),
    ]),
  );
  return { blob, memory: m, preserved, treePages: tree.pages, root: tree.root };
}
