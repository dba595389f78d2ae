// Where every field of a handover lives in guest-physical memory, for the corruption matrix:
// the root FDT's properties, the radix tree's tables and leaves, LUO's serialized sessions and
// files in their block chains, memfd's state and folio array, memblock's reserve_mem regions.
// The decoders (src/kho) say what the values are; this says where they are, so a mutation
// writes exactly one field, and the write guard (guard.ts) knows every byte that may be written.
// Pure: reads through PhysMemory, knows no guest.
import { parseFdt, type FdtNode } from "../fdt/reader.js";
import { decodeKhoFdt, type PhysMemory } from "../kho/abi.js";
import { PAGE_SIZE } from "../kho/blob.js";
import { decodeRadixKey, radixGeometry, tableShift, type KhoAbi, type PreservedChunk } from "../kho/radix.js";

const PAGE = BigInt(PAGE_SIZE);

/** A byte range of guest-physical memory, [start, end). */
export interface PhysRange {
  readonly start: bigint;
  readonly end: bigint;
  /** What lives there. */
  readonly what: string;
}

export interface RadixTable {
  readonly phys: bigint;
  /** depth-1 for the root table, 1 for the tables whose entries point at leaves. */
  readonly level: number;
  /** Key bits above this table's index field. */
  readonly prefix: bigint;
  /** Non-zero entries: index and pointer. */
  readonly entries: readonly { readonly index: number; readonly ptr: bigint }[];
}

export interface RadixLeaf {
  readonly phys: bigint;
  readonly prefix: bigint;
  /** The order of every chunk in it (the order bit lies above the bitmap for orders < 38). */
  readonly order: number | undefined;
  /** Set bits. */
  readonly bits: readonly number[];
}

export interface LuoFileLoc {
  /** The 64-byte luo_file_ser: compatible[48] at +0, data at +48, token at +56. */
  readonly entryAt: bigint;
  readonly compatible: string;
  readonly data: bigint;
  readonly memfd?: {
    /** memfd_luo_ser: pos +0, size +8, seals +16, flags +20, nr_folios +24, folios (kho_vmalloc) +32. */
    readonly serAt: bigint;
    readonly size: bigint;
    readonly nrFolios: bigint;
    /** The first folio entry (16 bytes: pfn:52|flags:12, index), when the array has one. */
    readonly firstFolioAt?: bigint;
    readonly firstFolioPfn?: bigint;
  };
}

export interface LuoSessionLoc {
  /** The 80-byte luo_session_ser: name[64], files (pa) at +64, count at +72. */
  readonly entryAt: bigint;
  readonly name: string;
  readonly fileBlocks: readonly bigint[];
  readonly files: readonly LuoFileLoc[];
}

export interface LuoLoc {
  /** luo_ser: compatible[8] +0, liveupdate_num +8, sessions_pa +16, flbs_pa +24. */
  readonly serAt: bigint;
  readonly sessionBlocks: readonly bigint[];
  readonly sessions: readonly LuoSessionLoc[];
}

export interface ReserveMemLoc {
  readonly name: string;
  readonly start: bigint;
  readonly size: bigint;
  /** Physical addresses of the native-endian u64 values of its `start` and `size` properties. */
  readonly startAt: bigint;
  readonly sizeAt: bigint;
}

export interface HandoverMap {
  readonly abi: KhoAbi;
  readonly fdtPhys: bigint;
  readonly fdt: Uint8Array;
  /** Physical address of the root FDT's header `totalsize` (big-endian u32). */
  readonly totalsizeAt: bigint;
  /** The root node's `compatible` value (NUL-terminated string). */
  readonly compatibleAt: bigint;
  readonly compatible: string;
  /** The root's `preserved-memory-map` value (u64, little-endian) and what it holds. */
  readonly mapAt: bigint;
  readonly radixRoot: bigint;
  /** The tree's pages as the host read them before the kexec (a case simulates a change on them). */
  readonly radixPages: ReadonlyMap<bigint, Uint8Array>;
  readonly tables: readonly RadixTable[];
  readonly leaves: readonly RadixLeaf[];
  /** Every chunk the tree holds. */
  readonly chunks: readonly PreservedChunk[];
  readonly subtrees: readonly { readonly name: string; readonly phys: bigint; readonly size: bigint }[];
  readonly luo?: LuoLoc;
  /** The LUO subtree FDT node's own `compatible`, when it has one. */
  readonly memblock?: { readonly fdtPhys: bigint; readonly regions: readonly ReserveMemLoc[] };
  readonly ram: readonly { readonly start: bigint; readonly end: bigint }[];
  /** The old kernel's KHO scratch areas (debugfs kho/out/scratch_phys and scratch_len). */
  readonly scratch: readonly { readonly start: bigint; readonly end: bigint }[];
  /** Every byte range the map describes: the only places a mutation may write (guard.ts). */
  readonly writable: readonly PhysRange[];
}

const u64 = (b: Uint8Array, at: number) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true);
const cstr = (b: Uint8Array, at: number, len: number) => {
  const s = b.subarray(at, at + len);
  const nul = s.indexOf(0);
  return Buffer.from(nul >= 0 ? s.subarray(0, nul) : s).toString("latin1");
};

/** The tables and leaves of a radix tree whose pages the host already holds (the snapshot). */
export function radixLayout(
  root: bigint,
  pages: ReadonlyMap<bigint, Uint8Array>,
  abi: KhoAbi,
): { tables: RadixTable[]; leaves: RadixLeaf[]; chunks: PreservedChunk[] } {
  const g = radixGeometry(12, abi);
  const tables: RadixTable[] = [];
  const leaves: RadixLeaf[] = [];
  const chunks: PreservedChunk[] = [];
  // A page may be reached twice (a corrupted tree shares a leaf); a cycle is cut where it closes.
  let visits = 0;
  const walk = (phys: bigint, level: number, prefix: bigint, ancestors: readonly bigint[] = []) => {
    const page = pages.get(phys);
    if (!page || ancestors.includes(phys) || ++visits > 1 << 16) return;
    if (level === 0) {
      const bits: number[] = [];
      for (let byte = 0; byte < page.length; byte++)
        for (let bit = 0; bit < 8; bit++) if ((page[byte] ?? 0) & (1 << bit)) bits.push(byte * 8 + bit);
      const first = decodeRadixKey(prefix | BigInt(bits[0] ?? 0), g);
      if (!leaves.some((l) => l.phys === phys)) leaves.push({ phys, prefix, order: first?.order, bits });
      for (const b of bits) {
        const c = decodeRadixKey(prefix | BigInt(b), g);
        if (c) chunks.push(c);
      }
      return;
    }
    const entries: { index: number; ptr: bigint }[] = [];
    for (let i = 0; i < page.length / 8; i++) {
      const ptr = u64(page, i * 8);
      if (ptr !== 0n) entries.push({ index: i, ptr });
    }
    if (!tables.some((t) => t.phys === phys)) tables.push({ phys, level, prefix, entries });
    const shift = BigInt(tableShift(level, g));
    for (const e of entries)
      walk(e.ptr, level - 1, prefix | (BigInt(e.index) << shift), [...ancestors, phys]);
  };
  walk(root, g.depth - 1, 0n);
  return { tables, leaves, chunks };
}

/** Reads a KHO block chain's pages: their addresses, and each entry's address. */
async function blockChain(
  mem: PhysMemory,
  head: bigint,
  entrySize: number,
): Promise<{ blocks: bigint[]; entries: { at: bigint; bytes: Uint8Array }[] }> {
  const blocks: bigint[] = [];
  const entries: { at: bigint; bytes: Uint8Array }[] = [];
  const perBlock = Math.floor((PAGE_SIZE - 16) / entrySize);
  for (let block = head; block !== 0n && !blocks.includes(block) && blocks.length < 64;) {
    blocks.push(block);
    const page = await mem.readPhys(block, PAGE_SIZE);
    const count = Math.min(Number(u64(page, 8)), perBlock);
    for (let i = 0; i < count; i++) {
      const at = 16 + i * entrySize;
      entries.push({ at: block + BigInt(at), bytes: page.slice(at, at + entrySize) });
    }
    block = u64(page, 0);
  }
  return { blocks, entries };
}

async function locateLuo(mem: PhysMemory, serAt: bigint): Promise<LuoLoc> {
  const ser = await mem.readPhys(serAt, 32);
  const sessions: LuoSessionLoc[] = [];
  const chain = await blockChain(mem, u64(ser, 16), 80);
  for (const s of chain.entries) {
    const files = await blockChain(mem, u64(s.bytes, 64), 64);
    const fileLocs: LuoFileLoc[] = [];
    for (const f of files.entries) {
      const compatible = cstr(f.bytes, 0, 48);
      const data = u64(f.bytes, 48);
      let memfd: LuoFileLoc["memfd"];
      if (compatible.startsWith("memfd") && data !== 0n) {
        const m = await mem.readPhys(data, 48);
        const nrFolios = u64(m, 24);
        const vmallocFirst = u64(m, 32);
        let first: { at: bigint; pfn: bigint } | undefined;
        if (nrFolios > 0n && vmallocFirst !== 0n) {
          // kho_vmalloc chunk {u64 next; u64 phys[511]}: phys[0] is the array's first page.
          const chunk = await mem.readPhys(vmallocFirst, 16);
          const firstPage = u64(chunk, 8);
          if (firstPage !== 0n) {
            const entry = await mem.readPhys(firstPage, 16);
            first = { at: firstPage, pfn: u64(entry, 0) & ((1n << 52n) - 1n) };
          }
        }
        memfd = {
          serAt: data,
          size: u64(m, 8),
          nrFolios,
          ...(first ? { firstFolioAt: first.at, firstFolioPfn: first.pfn } : {}),
        };
      }
      fileLocs.push({ entryAt: f.at, compatible, data, ...(memfd ? { memfd } : {}) });
    }
    sessions.push({ entryAt: s.at, name: cstr(s.bytes, 0, 64), fileBlocks: files.blocks, files: fileLocs });
  }
  return { serAt, sessionBlocks: chain.blocks, sessions };
}

function locateMemblock(blob: Uint8Array, fdtPhys: bigint): ReserveMemLoc[] {
  const { root } = parseFdt(blob);
  return root.children.map((node: FdtNode) => {
    const at = (prop: string) => fdtPhys + BigInt(node.propOffsets.get(prop) ?? 0);
    const value = (prop: string) => {
      const v = node.props.get(prop);
      return v && v.length === 8 ? u64(v, 0) : 0n;
    };
    return {
      name: node.name,
      start: value("start"),
      size: value("size"),
      startAt: at("start"),
      sizeAt: at("size"),
    };
  });
}

/**
 * Locates every field of the handover: `fdt` is the root FDT read at `fdtPhys`, `radixPages`
 * the tree's pages (the pre-kexec snapshot), `mem` the paused guest's memory.
 */
export async function locateHandover(
  mem: PhysMemory,
  fdtPhys: bigint,
  fdt: Uint8Array,
  radixPages: ReadonlyMap<bigint, Uint8Array>,
  ram: readonly { readonly start: bigint; readonly end: bigint }[],
  scratch: readonly { readonly start: bigint; readonly end: bigint }[] = [],
): Promise<HandoverMap> {
  const root = decodeKhoFdt(fdt);
  const node = root.fdt.root;
  const off = (n: FdtNode, prop: string) => BigInt(n.propOffsets.get(prop) ?? 0);
  const compatibleValue = node.props.get("compatible") ?? new Uint8Array();
  const layout = radixLayout(root.preservedMemoryMap, radixPages, root.abi);
  const subtrees = root.subtrees.map((s) => ({ name: s.name, phys: s.phys, size: s.size ?? PAGE }));
  const luoSub = subtrees.find((s) => s.name === "LUO");
  const luo = luoSub ? await locateLuo(mem, luoSub.phys) : undefined;
  const mbSub = subtrees.find((s) => s.name === "memblock");
  const memblock = mbSub
    ? {
        fdtPhys: mbSub.phys,
        regions: locateMemblock(await mem.readPhys(mbSub.phys, Number(mbSub.size)), mbSub.phys),
      }
    : undefined;
  const writable: PhysRange[] = [
    { start: fdtPhys, end: fdtPhys + BigInt(fdt.length), what: "root FDT" },
    ...[...layout.tables, ...layout.leaves].map((t) => ({
      start: t.phys,
      end: t.phys + PAGE,
      what: "level" in t ? `radix table (level ${t.level})` : "radix leaf",
    })),
    ...subtrees.map((s) => ({ start: s.phys, end: s.phys + s.size, what: `subtree ${s.name}` })),
    ...(luo
      ? [
          ...luo.sessionBlocks.map((b) => ({ start: b, end: b + PAGE, what: "LUO session block" })),
          ...luo.sessions.flatMap((s) => [
            ...s.fileBlocks.map((b) => ({ start: b, end: b + PAGE, what: `LUO file block of ${s.name}` })),
            ...s.files.flatMap((f) =>
              f.memfd
                ? [
                    { start: f.memfd.serAt, end: f.memfd.serAt + 48n, what: "memfd_luo_ser" },
                    ...(f.memfd.firstFolioAt !== undefined
                      ? [
                          {
                            start: f.memfd.firstFolioAt,
                            end: f.memfd.firstFolioAt + PAGE,
                            what: "memfd folio array",
                          },
                        ]
                      : []),
                  ]
                : [],
            ),
          ]),
        ]
      : []),
  ];
  return {
    abi: root.abi,
    fdtPhys,
    fdt,
    totalsizeAt: fdtPhys + 4n,
    compatibleAt: fdtPhys + off(node, "compatible"),
    compatible: cstr(compatibleValue, 0, compatibleValue.length),
    mapAt: fdtPhys + off(node, "preserved-memory-map"),
    radixRoot: root.preservedMemoryMap,
    radixPages,
    tables: layout.tables,
    leaves: layout.leaves,
    chunks: layout.chunks,
    subtrees,
    ...(luo ? { luo } : {}),
    ...(memblock ? { memblock } : {}),
    ram,
    scratch,
    writable,
  };
}
