// Decode the KHO handover state: the root FDT (include/linux/kho/abi/kexec_handover.h) and, given a
// way to read guest-physical memory, the sub-blobs its nodes point to: kexec-metadata (raw struct),
// memblock (FDT), LUO (raw struct plus block chains of sessions and files, memfd state) and kho_test
// (FDT plus a vmalloc'ed folio list). Values are native little-endian, even inside FDT properties.
// Layouts were checked against Linux 7.2.13 (see each decoder's comment); anything that does not
// match is a DecodeError naming the structure's physical address and the offset inside it.

import { DecodeError } from "../errors.js";
import {
  FDT_BEGIN_NODE,
  FDT_MAGIC,
  FDT_NOP,
  FDT_PROP,
  type Fdt,
  type FdtNode,
  decodeStringList,
  findNode,
  parseFdt,
  propLeU32,
  propLeU64,
  propString,
} from "../fdt/reader.js";
import {
  type KhoAbi,
  type PreservedChunk,
  isKhoAbi,
  parseKhoAbi,
  preservedRanges,
  walkRadixTree,
} from "./radix.js";

export { KHO_ABIS, type KhoAbi, UnsupportedKhoAbiError } from "./radix.js";

const PAGE_SIZE = 4096; // x86_64 and arm64 with 4K pages; KHO refuses to mix page sizes anyway
const DEFAULT_MAX_BLOB = 1 << 20;
const hex = (n: bigint | number): string => `0x${n.toString(16)}`;

/** A decode error inside a structure in guest memory: names its physical address. */
export class KhoBlobError extends DecodeError {
  override readonly name: string = "KhoBlobError";
  constructor(
    format: string,
    /** Physical address of the structure (blob, block, chunk) that is wrong. */
    readonly phys: bigint,
    offset: number,
    reason: string,
  ) {
    super(format, offset, `${reason} (structure at ${hex(phys)})`);
  }
}

/** Guest-physical memory, e.g. an ElfReader over a dump-guest-memory vmcore. */
export interface PhysMemory {
  readPhys(paddr: bigint, length: number): Promise<Uint8Array>;
}

/**
 * The radix root from the old kernel's debugfs kho/out/fdt, which is truncated (its size is
 * fixed at fs_initcall, before LUO and the other subtrees grow the FDT): the strings block,
 * and with it the property names, usually lies past the end. The root node's properties still
 * sit whole at the start of the structure block: `compatible` (readable) and one 8-byte value,
 * `preserved-memory-map`. A name that can be read must be that one; an unreadable name is taken
 * only when the root has exactly one 8-byte property. The caller checks the result against the
 * complete kho/in/fdt after the kexec.
 */
export function outFdtRadixRoot(blob: Uint8Array): { readonly abi: KhoAbi; readonly root: bigint } {
  const fail = (offset: number, reason: string): never => {
    throw new DecodeError("kho out/fdt", offset, reason);
  };
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const u32 = (off: number): number =>
    off + 4 <= blob.length ? view.getUint32(off, false) : fail(off, "ends early");
  if (u32(0) !== FDT_MAGIC) fail(0, "bad FDT magic");
  const structStart = u32(8);
  const stringsStart = u32(12);
  let off = structStart;
  if (u32(off) !== FDT_BEGIN_NODE || blob[off + 4] !== 0)
    fail(off, "the structure block does not open the root node");
  off += 8;
  let abi: KhoAbi | undefined;
  const eightByte: { name: string | undefined; value: bigint; at: number }[] = [];
  for (;;) {
    const token = u32(off);
    if (token === FDT_NOP) {
      off += 4;
      continue;
    }
    if (token !== FDT_PROP) break;
    const len = u32(off + 4);
    const nameAt = stringsStart + u32(off + 8);
    const value = off + 12;
    if (len > blob.length || value + len > blob.length)
      fail(off, `property of ${len} bytes runs past the blob`);
    const nul = nameAt < blob.length ? blob.indexOf(0, nameAt) : -1;
    const name = nul < 0 ? undefined : new TextDecoder().decode(blob.subarray(nameAt, nul));
    if (len === 8) eightByte.push({ name, value: view.getBigUint64(value, true), at: off });
    else if (name === undefined || name === "compatible") {
      const text = new TextDecoder().decode(blob.subarray(value, value + len)).replace(/\0+$/, "");
      if (isKhoAbi(text)) abi = text;
    }
    off = value + ((len + 3) & ~3);
  }
  if (!abi) return fail(structStart, "the root has no KHO compatible this harness knows");
  const named = eightByte.filter((p) => p.name === "preserved-memory-map");
  const unnamed = eightByte.filter((p) => p.name === undefined);
  const pick =
    named.length === 1 ? named[0] : named.length === 0 && unnamed.length === 1 ? unnamed[0] : undefined;
  if (!pick)
    return fail(
      structStart,
      `no single preserved-memory-map among ${eightByte.length} 8-byte root properties`,
    );
  if (pick.value === 0n) return fail(pick.at, "preserved-memory-map is 0");
  return { abi, root: pick.value };
}

// ------------------------------------------------------------------------------------------------
// Root FDT

export interface KhoSubtree {
  readonly name: string;
  /** `preserved-data`: physical address of the blob. */
  readonly phys: bigint;
  /** `blob-size`; undefined for kho-v2, which had no such property. */
  readonly size: bigint | undefined;
  readonly node: FdtNode;
}

export interface KhoRootFdt {
  readonly abi: KhoAbi;
  /** Physical address of the radix tree root (`preserved-memory-map`). */
  readonly preservedMemoryMap: bigint;
  /** In blob order; the kernel inserts new subtrees first, so look them up by name. */
  readonly subtrees: readonly KhoSubtree[];
  readonly fdt: Fdt;
  /** Size of the blob that was decoded. */
  readonly blobLength: number;
}

const ROOT_PROPS = new Set(["compatible", "preserved-memory-map"]);
const SUBTREE_PROPS = new Set(["preserved-data", "blob-size"]);

/** Decode a KHO root FDT (debugfs kho/in/fdt, or the page at the handed-over address). */
export function decodeKhoFdt(blob: Uint8Array): KhoRootFdt {
  const fdt = parseFdt(blob);
  const root = fdt.root;
  const compatOffset = root.propOffsets.get("compatible");
  if (compatOffset === undefined) throw new DecodeError("kho", root.offset, "root node has no compatible");
  // fdt_node_check_compatible() accepts any entry of a string list; KHO writes exactly one.
  const compatibles = decodeStringList(
    root.props.get("compatible") ?? new Uint8Array(),
    compatOffset,
    "compatible",
  );
  const named =
    compatibles.find(isKhoAbi) ?? compatibles.find((c) => c.startsWith("kho-v")) ?? compatibles.join(",");
  const abi = parseKhoAbi(named, compatOffset);
  // kexec_handover.c:518-530 and :1418-1426: exactly 8 bytes, read with get_unaligned(); 0 is refused.
  const preservedMemoryMap = propLeU64(root, "preserved-memory-map");
  if (preservedMemoryMap === 0n) {
    throw new DecodeError(
      "kho",
      root.propOffsets.get("preserved-memory-map") ?? 0,
      "preserved-memory-map is 0",
    );
  }
  const subtrees = root.children.map((node): KhoSubtree => {
    // kho_retrieve_subtree (:1375-1409): both properties are exactly 8 bytes.
    const phys = propLeU64(node, "preserved-data");
    const size = abi === "kho-v2" && !node.props.has("blob-size") ? undefined : propLeU64(node, "blob-size");
    return { name: node.name, phys, size, node };
  });
  return { abi, preservedMemoryMap, subtrees, fdt, blobLength: blob.length };
}

// ------------------------------------------------------------------------------------------------
// Little helpers over struct bytes

function reader(bytes: Uint8Array, format: string, phys: bigint) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (offset: number, size: number): void => {
    if (offset + size > bytes.length) {
      throw new KhoBlobError(
        format,
        phys,
        offset,
        `structure is ${bytes.length} bytes, field needs ${offset + size}`,
      );
    }
  };
  return {
    u16: (o: number): number => {
      need(o, 2);
      return view.getUint16(o, true);
    },
    u32: (o: number): number => {
      need(o, 4);
      return view.getUint32(o, true);
    },
    u64: (o: number): bigint => {
      need(o, 8);
      return view.getBigUint64(o, true);
    },
    /** A fixed char[len] field: text up to the first NUL (or the whole field, as strscpy would cut it). */
    chars: (o: number, len: number): string => {
      need(o, len);
      const field = bytes.subarray(o, o + len);
      const nul = field.indexOf(0);
      return latin1.decode(nul < 0 ? field : field.subarray(0, nul));
    },
    fail: (offset: number, reason: string): never => {
      throw new KhoBlobError(format, phys, offset, reason);
    },
  };
}

const latin1 = new TextDecoder("latin1");

function toSafeNumber(v: bigint, fail: (reason: string) => never, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${hex(v)} is absurdly large`);
  return Number(v);
}

// ------------------------------------------------------------------------------------------------
// kexec-metadata (abi/kexec_metadata.h): packed { u32 version; char previous_release[65]; u32 kexec_count; }

export const KEXEC_METADATA_SIZE = 73;

export interface KexecMetadata {
  readonly kind: "kexec-metadata";
  readonly version: number;
  /** `uname -r` of the kernel that did the kexec. */
  readonly previousRelease: string;
  /** 0 on a cold boot; each kexec adds one. */
  readonly kexecCount: number;
}

/** Same acceptance rules as kho_in_kexec_metadata() (kexec_handover.c:1457-1495). */
export function decodeKexecMetadata(bytes: Uint8Array, phys = 0n): KexecMetadata {
  const r = reader(bytes, "kexec-metadata", phys);
  if (bytes.length < 4) r.fail(0, `blob is ${bytes.length} bytes, too small for a version`);
  const version = r.u32(0);
  if (version !== 1) r.fail(0, `kexec-metadata version ${version} is not supported (expected 1)`);
  if (bytes.length < KEXEC_METADATA_SIZE)
    r.fail(0, `blob is ${bytes.length} bytes, v1 needs ${KEXEC_METADATA_SIZE}`);
  return { kind: "kexec-metadata", version, previousRelease: r.chars(4, 65), kexecCount: r.u32(69) };
}

// ------------------------------------------------------------------------------------------------
// memblock (abi/memblock.h, mm/memblock.c:2557-2614): FDT "memblock-v1", one "reserve-mem-v1" child per
// reserve_mem= region with native u64 start and size.

export interface ReserveMemRegion {
  readonly name: string;
  readonly start: bigint;
  readonly size: bigint;
}

export interface MemblockState {
  readonly kind: "memblock";
  readonly regions: readonly ReserveMemRegion[];
}

function requireCompatible(node: FdtNode, expected: string, format: string): void {
  const compat = propString(node, "compatible");
  if (compat !== expected) {
    throw new DecodeError(
      format,
      node.propOffsets.get("compatible") ?? node.offset,
      `compatible "${compat}" is not "${expected}"`,
    );
  }
}

export function decodeMemblockFdt(bytes: Uint8Array): MemblockState {
  const { root } = parseFdt(bytes);
  requireCompatible(root, "memblock-v1", "memblock");
  const regions = root.children.map((node) => {
    requireCompatible(node, "reserve-mem-v1", "memblock");
    return { name: node.name, start: propLeU64(node, "start"), size: propLeU64(node, "size") };
  });
  return { kind: "memblock", regions };
}

// ------------------------------------------------------------------------------------------------
// kho_vmalloc (abi/kexec_handover.h:104-178): {u64 first; u32 total_pages; u16 flags; u16 order}, and a
// chain of one-page chunks {u64 next; u64 phys[511]} whose zero entry ends the chunk's list.

export interface KhoVmalloc {
  readonly first: bigint;
  readonly totalPages: number;
  /** KHO_VMALLOC_ALLOC 0x1, KHO_VMALLOC_HUGE_VMAP 0x2. */
  readonly flags: number;
  /** Page order of each contiguous run. */
  readonly order: number;
}

export function decodeKhoVmalloc(bytes: Uint8Array, phys = 0n, at = 0): KhoVmalloc {
  const r = reader(bytes, "kho-vmalloc", phys);
  return { first: r.u64(at), totalPages: r.u32(at + 8), flags: r.u16(at + 12), order: r.u16(at + 14) };
}

/**
 * Read the first `length` bytes of a preserved vmalloc area. Walks the whole chunk chain like
 * kho_restore_vmalloc() (kexec_handover.c:1154-1240) so a wrong page count or a cycle is caught.
 */
export async function readKhoVmalloc(mem: PhysMemory, desc: KhoVmalloc, length: number): Promise<Uint8Array> {
  const fail = (phys: bigint, offset: number, reason: string): never => {
    throw new KhoBlobError("kho-vmalloc", phys, offset, reason);
  };
  if (desc.order > 20) fail(desc.first, 14, `run order ${desc.order} is implausible`);
  const runPages = 1 << desc.order;
  if (length > desc.totalPages * PAGE_SIZE) {
    fail(desc.first, 8, `area has ${desc.totalPages} pages, ${length} bytes were expected in it`);
  }
  const runs: bigint[] = [];
  const seen = new Set<bigint>();
  let pages = 0;
  for (let chunk = desc.first; chunk !== 0n;) {
    if (chunk % BigInt(PAGE_SIZE) !== 0n) fail(chunk, 0, "chunk is not page-aligned");
    if (seen.has(chunk)) fail(chunk, 0, "chunk list loops");
    seen.add(chunk);
    const page = await mem.readPhys(chunk, PAGE_SIZE);
    const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
    for (let i = 1; i < PAGE_SIZE / 8; i++) {
      const run = view.getBigUint64(i * 8, true);
      if (run === 0n) break;
      if (pages + runPages > desc.totalPages)
        fail(chunk, i * 8, `runs exceed total_pages ${desc.totalPages}`);
      runs.push(run);
      pages += runPages;
    }
    chunk = view.getBigUint64(0, true);
  }
  if (pages !== desc.totalPages)
    fail(desc.first, 8, `chunks hold ${pages} pages, total_pages is ${desc.totalPages}`);
  const out = new Uint8Array(length);
  const runBytes = runPages * PAGE_SIZE;
  for (let i = 0, done = 0; done < length; i++) {
    const run = runs[i];
    if (run === undefined) break;
    const take = Math.min(runBytes, length - done);
    out.set(await mem.readPhys(run, take), done);
    done += take;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// kho_test (lib/test_kho.c:97-122): FDT "kho-test-v1", magic u32 0x4b484f21, /data { nr_folios u32,
// folios_info struct kho_vmalloc, csum u32 }, all native-endian. The vmalloc'ed array holds one
// u64 per folio: phys | order (order in the bits below PAGE_SHIFT).

export const KHO_TEST_MAGIC = 0x4b484f21;

export interface KhoTestState {
  readonly kind: "kho-test";
  readonly nrFolios: number;
  readonly foliosInfo: KhoVmalloc;
  /** The running csum_partial() (__wsum) over all folios. */
  readonly csum: number;
  /** The folio list, when memory was available to read it. */
  readonly folios?: readonly PreservedChunk[];
}

export function decodeKhoTestFdt(bytes: Uint8Array): KhoTestState {
  const { root } = parseFdt(bytes);
  requireCompatible(root, "kho-test-v1", "kho-test");
  const magic = propLeU32(root, "magic");
  if (magic !== KHO_TEST_MAGIC) {
    throw new DecodeError(
      "kho-test",
      root.propOffsets.get("magic") ?? 0,
      `magic ${hex(magic)} is not "KHO!"`,
    );
  }
  const data = findNode(root, "/data");
  if (!data) throw new DecodeError("kho-test", root.offset, "no /data node");
  const info = data.props.get("folios_info");
  const infoAt = data.propOffsets.get("folios_info") ?? data.offset;
  if (!info || info.length !== 16) {
    throw new DecodeError(
      "kho-test",
      infoAt,
      `/data:folios_info is ${info?.length ?? "missing"}, expected 16 bytes`,
    );
  }
  return {
    kind: "kho-test",
    nrFolios: propLeU32(data, "nr_folios"),
    foliosInfo: decodeKhoVmalloc(info),
    csum: propLeU32(data, "csum"),
  };
}

async function readKhoTestFolios(mem: PhysMemory, state: KhoTestState): Promise<PreservedChunk[]> {
  const bytes = await readKhoVmalloc(mem, state.foliosInfo, state.nrFolios * 8);
  const view = new DataView(bytes.buffer);
  return Array.from({ length: state.nrFolios }, (_, i) => {
    const v = view.getBigUint64(i * 8, true);
    return { phys: v & ~BigInt(PAGE_SIZE - 1), order: Number(v & BigInt(PAGE_SIZE - 1)) };
  });
}

// ------------------------------------------------------------------------------------------------
// LUO (abi/luo.h, abi/block.h, abi/memfd.h). luo_ser {char compatible[8]; u64 liveupdate_num;
// u64 sessions_pa; u64 flbs_pa}. Sessions and files live in block chains: one preserved page per block,
// {u64 next; u64 count} then `count` packed entries; luo_session_ser is 80 bytes {char name[64];
// u64 files; u64 count}, luo_file_ser is 64 bytes {char compatible[48]; u64 data; u64 token}.

export const LUO_SER_SIZE = 32;
export const LUO_ABI_COMPATIBLE = "luo-v5";
const SESSION_SER_SIZE = 80;
const FILE_SER_SIZE = 64;
const FLB_SER_SIZE = 64;
const BLOCK_HEADER_SIZE = 16;
/** kho_block.c:38: a chain longer than this is corrupt. */
const KHO_MAX_BLOCKS = 10000;

export interface LuoSer {
  readonly compatible: string;
  /** Incoming number + 1; 1 after a cold boot. */
  readonly liveupdateNum: bigint;
  /** First session block; 0 until reboot(LINUX_REBOOT_CMD_KEXEC) serializes the sessions. */
  readonly sessionsPa: bigint;
  readonly flbsPa: bigint;
}

export interface MemfdSer {
  readonly pos: bigint;
  readonly size: bigint;
  /** F_SEAL_* bits (uABI values). */
  readonly seals: number;
  readonly flags: number;
  readonly nrFolios: bigint;
  readonly folios: KhoVmalloc;
  /** memfd_luo_folio_ser entries, when memory was available. Folio orders live in the radix tree. */
  readonly folioList?: readonly MemfdFolio[];
}

export interface MemfdFolio {
  readonly pfn: bigint;
  /** MEMFD_LUO_FOLIO_DIRTY 0x1, MEMFD_LUO_FOLIO_UPTODATE 0x2. */
  readonly flags: number;
  /** Page offset of the folio in the file. */
  readonly index: bigint;
}

export interface LuoFile {
  readonly compatible: string;
  readonly data: bigint;
  readonly token: bigint;
  /** Decoded handler state for "memfd-v2" files. */
  readonly memfd?: MemfdSer;
}

export interface LuoSession {
  readonly name: string;
  readonly files: readonly LuoFile[];
}

export interface LuoFlb {
  readonly name: string;
  readonly data: bigint;
  /** Number of preserved files depending on it. */
  readonly count: bigint;
}

export interface LuoState extends LuoSer {
  readonly kind: "luo";
  /** Present when memory was read; empty until the sessions are serialized at reboot(KEXEC). */
  readonly sessions?: readonly LuoSession[];
  readonly flbs?: readonly LuoFlb[];
}

/** luo_core.c:116 compares with strncmp over the 8-byte field. */
export function decodeLuoSer(bytes: Uint8Array, phys = 0n): LuoSer {
  const r = reader(bytes, "luo", phys);
  const compatible = r.chars(0, 8);
  if (compatible !== LUO_ABI_COMPATIBLE) {
    r.fail(0, `LUO ABI ${compatible} is not supported by this harness (supported: ${LUO_ABI_COMPATIBLE})`);
  }
  return { compatible, liveupdateNum: r.u64(8), sessionsPa: r.u64(16), flbsPa: r.u64(24) };
}

/** Entries of a KHO block chain, validated like kho_block_set_restore() (kho_block.c:204-293). */
export async function readBlockChain(
  mem: PhysMemory,
  head: bigint,
  entrySize: number,
  format: string,
): Promise<Uint8Array[]> {
  const perBlock = Math.floor((PAGE_SIZE - BLOCK_HEADER_SIZE) / entrySize);
  const entries: Uint8Array[] = [];
  const seen = new Set<bigint>();
  for (let block = head; block !== 0n;) {
    const fail = (offset: number, reason: string): never => {
      throw new KhoBlobError(format, block, offset, reason);
    };
    if (block % BigInt(PAGE_SIZE) !== 0n) fail(0, "block is not page-aligned");
    if (seen.has(block)) fail(0, "block chain loops");
    if (seen.size >= KHO_MAX_BLOCKS) fail(0, `block chain is longer than ${KHO_MAX_BLOCKS} blocks`);
    seen.add(block);
    const page = await mem.readPhys(block, PAGE_SIZE);
    const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
    const count = view.getBigUint64(8, true);
    if (count === 0n || count > BigInt(perBlock)) fail(8, `block count ${count} is not in 1..${perBlock}`);
    for (let i = 0; i < Number(count); i++) {
      const at = BLOCK_HEADER_SIZE + i * entrySize;
      entries.push(page.slice(at, at + entrySize));
    }
    block = view.getBigUint64(0, true);
  }
  return entries;
}

/** mm/memfd_luo.c: memfd_luo_ser, packed, 48 bytes. */
export function decodeMemfdSer(bytes: Uint8Array, phys = 0n): MemfdSer {
  const r = reader(bytes, "memfd", phys);
  if (bytes.length < 48) r.fail(0, `memfd_luo_ser is 48 bytes, got ${bytes.length}`);
  return {
    pos: r.u64(0),
    size: r.u64(8),
    seals: r.u32(16),
    flags: r.u32(20),
    nrFolios: r.u64(24),
    folios: decodeKhoVmalloc(bytes, phys, 32),
  };
}

async function readMemfd(mem: PhysMemory, phys: bigint, maxBytes: number): Promise<MemfdSer> {
  const ser = decodeMemfdSer(await mem.readPhys(phys, 48), phys);
  if (ser.nrFolios === 0n) return { ...ser, folioList: [] };
  const fail = (reason: string): never => {
    throw new KhoBlobError("memfd", phys, 24, reason);
  };
  const bytes = toSafeNumber(ser.nrFolios, fail, "nr_folios") * 16;
  if (bytes > maxBytes)
    fail(`nr_folios ${ser.nrFolios} needs ${bytes} bytes, more than the ${maxBytes} allowed`);
  const array = await readKhoVmalloc(mem, ser.folios, bytes);
  const view = new DataView(array.buffer);
  const folioList = Array.from({ length: bytes / 16 }, (_, i): MemfdFolio => {
    // u64 pfn:52, flags:12 (GCC little-endian bitfield order: pfn in the low bits).
    const word = view.getBigUint64(i * 16, true);
    return {
      pfn: word & ((1n << 52n) - 1n),
      flags: Number(word >> 52n),
      index: view.getBigUint64(i * 16 + 8, true),
    };
  });
  return { ...ser, folioList };
}

async function readLuoState(mem: PhysMemory, ser: LuoSer, maxBytes: number): Promise<LuoState> {
  const sessions: LuoSession[] = [];
  for (const entry of await readBlockChain(mem, ser.sessionsPa, SESSION_SER_SIZE, "luo-sessions")) {
    const r = reader(entry, "luo-sessions", ser.sessionsPa);
    const name = r.chars(0, 64);
    const filesPa = r.u64(64);
    const count = r.u64(72);
    const files: LuoFile[] = [];
    if (filesPa === 0n && count !== 0n) r.fail(72, `session "${name}" has ${count} files but no file blocks`);
    for (const fileEntry of await readBlockChain(mem, filesPa, FILE_SER_SIZE, "luo-files")) {
      const f = reader(fileEntry, "luo-files", filesPa);
      const file = { compatible: f.chars(0, 48), data: f.u64(48), token: f.u64(56) };
      files.push(
        file.compatible === "memfd-v2" ? { ...file, memfd: await readMemfd(mem, file.data, maxBytes) } : file,
      );
    }
    // luo_file.c:824-829: the stored count must match the entries found.
    if (BigInt(files.length) !== count)
      r.fail(72, `session "${name}" says ${count} files, blocks hold ${files.length}`);
    sessions.push({ name, files });
  }
  const flbs: LuoFlb[] = [];
  if (ser.flbsPa !== 0n) {
    const header = reader(await mem.readPhys(ser.flbsPa, 16), "luo-flb", ser.flbsPa);
    const pgcnt = header.u64(0);
    const count = header.u64(8);
    if (pgcnt === 0n || pgcnt > 64n) header.fail(0, `pgcnt ${pgcnt} is implausible (the kernel writes 1)`);
    const max = Math.floor((Number(pgcnt) * PAGE_SIZE - 16) / FLB_SER_SIZE);
    if (count > BigInt(max)) header.fail(8, `FLB count ${count} exceeds the ${max} that fit`);
    const body = await mem.readPhys(ser.flbsPa + 16n, Number(count) * FLB_SER_SIZE);
    const r = reader(body, "luo-flb", ser.flbsPa);
    for (let i = 0; i < Number(count); i++) {
      const at = i * FLB_SER_SIZE;
      flbs.push({ name: r.chars(at, 48), data: r.u64(at + 48), count: r.u64(at + 56) });
    }
  }
  return { kind: "luo", ...ser, sessions, flbs };
}

// ------------------------------------------------------------------------------------------------
// Whole-state decode

export interface UnknownBlob {
  readonly kind: "unknown";
  /** The first bytes of the blob, for display. */
  readonly head: Uint8Array;
}

export type KhoBlob = KexecMetadata | MemblockState | LuoState | KhoTestState | UnknownBlob;

export interface DecodedSubtree extends KhoSubtree {
  /** Decoded contents, when memory was given and decoding worked. */
  readonly blob?: KhoBlob;
  /** Why this blob could not be decoded; the rest of the tree still is. */
  readonly error?: DecodeError;
}

export interface DecodedKho extends KhoRootFdt {
  readonly subtrees: readonly DecodedSubtree[];
  /** Every preserved chunk, when the radix tree was walked. */
  readonly preservedMemory?: readonly PreservedChunk[];
  readonly preservedMemoryError?: DecodeError;
}

export interface DecodeKhoOptions {
  /** Guest memory; without it only the root FDT is decoded. */
  readonly memory?: PhysMemory;
  /** RAM test for radix tree pointers; the tree is walked only when this is given too. */
  readonly isRam?: (paddr: bigint) => boolean;
  /** Largest blob or array read from memory. Default 1 MiB for blobs, 64 MiB for arrays. */
  readonly maxBlobSize?: number;
}

/** Decode the root FDT, then every sub-blob and the memory map that memory access allows. */
export async function decodeKho(blob: Uint8Array, options: DecodeKhoOptions = {}): Promise<DecodedKho> {
  const root = decodeKhoFdt(blob);
  const mem = options.memory;
  if (!mem) return root;
  const maxBlob = options.maxBlobSize ?? DEFAULT_MAX_BLOB;
  const subtrees: DecodedSubtree[] = [];
  for (const sub of root.subtrees) {
    try {
      subtrees.push({ ...sub, blob: await decodeSubtreeBlob(sub, mem, maxBlob) });
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      subtrees.push({ ...sub, error: err });
    }
  }
  let walk: Pick<DecodedKho, "preservedMemory" | "preservedMemoryError"> = {};
  if (options.isRam) {
    try {
      const preservedMemory = await walkRadixTree({
        root: root.preservedMemoryMap,
        abi: root.abi,
        readPage: (p) => mem.readPhys(p, PAGE_SIZE),
        isRam: options.isRam,
      });
      walk = { preservedMemory };
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      walk = { preservedMemoryError: err };
    }
  }
  return { ...root, subtrees, ...walk };
}

async function decodeSubtreeBlob(sub: KhoSubtree, mem: PhysMemory, maxBlob: number): Promise<KhoBlob> {
  const size = sub.size ?? (await fdtSizeAt(mem, sub.phys));
  if (size > BigInt(maxBlob)) {
    throw new KhoBlobError(
      "kho",
      sub.phys,
      0,
      `blob-size ${size} of "${sub.name}" exceeds the ${maxBlob}-byte limit`,
    );
  }
  const bytes = await mem.readPhys(sub.phys, Number(size));
  switch (sub.name) {
    case "kexec-metadata":
      return decodeKexecMetadata(bytes, sub.phys);
    case "memblock":
      return decodeMemblockFdt(bytes);
    case "LUO": {
      const ser = decodeLuoSer(bytes, sub.phys);
      return readLuoState(mem, ser, maxBlob * 64);
    }
    case "kho_test": {
      const state = decodeKhoTestFdt(bytes);
      return { ...state, folios: await readKhoTestFolios(mem, state) };
    }
    default:
      return { kind: "unknown", head: bytes.slice(0, 64) };
  }
}

/** kho-v2 recorded no blob size; its blobs were FDTs, which carry their own totalsize. */
async function fdtSizeAt(mem: PhysMemory, phys: bigint): Promise<bigint> {
  const header = await mem.readPhys(phys, 40);
  const view = new DataView(header.buffer, header.byteOffset, 40);
  if (view.getUint32(0, false) !== 0xd00dfeed) {
    throw new KhoBlobError("kho", phys, 0, "kho-v2 subtree has no blob-size and its blob is not an FDT");
  }
  return BigInt(view.getUint32(4, false));
}

// ------------------------------------------------------------------------------------------------
// Presentation: a readable tree for humans and a JSON document for `kho inspect-fdt --json`.

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

const SEAL_NAMES: readonly [number, string][] = [
  [0x1, "SEAL"],
  [0x2, "SHRINK"],
  [0x4, "GROW"],
  [0x8, "WRITE"],
  [0x10, "FUTURE_WRITE"],
  [0x20, "EXEC"],
];

function sealNames(seals: number): string {
  const names = SEAL_NAMES.filter(([bit]) => seals & bit).map(([, name]) => name);
  const unknown = seals & ~0x3f;
  if (unknown) names.push(hex(unknown));
  return names.length ? names.join("|") : "none";
}

function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function humanSize(bytes: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Known properties of the root FDT, decoded; anything else shows as raw hex. */
function describeProp(path: string, name: string, value: Uint8Array): { type: string; value: string } {
  const u64 =
    value.length === 8 ? new DataView(value.buffer, value.byteOffset, 8).getBigUint64(0, true) : undefined;
  if (path === "/" && name === "compatible") {
    return { type: "string", value: decodeStringList(value, 0, name).join(", ") };
  }
  if (u64 !== undefined && (path === "/" ? ROOT_PROPS.has(name) : SUBTREE_PROPS.has(name))) {
    return { type: "u64le", value: hex(u64) };
  }
  return { type: "raw", value: hexBytes(value) };
}

/** test_kho scatters folios over memory; past this many ranges the list stops being readable. */
const MAX_RANGE_LINES = 32;

export function formatKhoTree(decoded: DecodedKho): string {
  const lines: string[] = [`KHO root FDT: ${decoded.abi} (${decoded.blobLength} bytes)`];
  const root = decoded.fdt.root;
  for (const [name, value] of root.props) {
    const d = describeProp("/", name, value);
    if (name !== "compatible") lines.push(`  ${name} = ${d.value}${d.type === "raw" ? " (raw)" : ""}`);
  }
  if (decoded.preservedMemory) {
    const chunks = decoded.preservedMemory;
    const total = chunks.reduce((n, c) => n + (BigInt(PAGE_SIZE) << BigInt(c.order)), 0n);
    const ranges = preservedRanges(chunks);
    lines.push(`  preserved memory: ${chunks.length} chunks, ${humanSize(total)} in ${ranges.length} ranges`);
    for (const r of ranges.slice(0, MAX_RANGE_LINES)) {
      lines.push(`    ${hex(r.start)}-${hex(r.end - 1n)} (${humanSize(r.end - r.start)})`);
    }
    if (ranges.length > MAX_RANGE_LINES)
      lines.push(`    ... and ${ranges.length - MAX_RANGE_LINES} more ranges`);
  } else if (decoded.preservedMemoryError) {
    lines.push(`  preserved memory: unreadable: ${decoded.preservedMemoryError.message}`);
  }
  for (const sub of decoded.subtrees) {
    const size = sub.size === undefined ? "size unrecorded" : `${sub.size} bytes`;
    lines.push(`  ${sub.node.path}: blob at ${hex(sub.phys)}, ${size}`);
    for (const [name, value] of sub.node.props) {
      if (!SUBTREE_PROPS.has(name)) lines.push(`    ${name} = ${hexBytes(value)} (raw)`);
    }
    for (const child of sub.node.children) lines.push(`    unexpected child node ${child.path}`);
    if (sub.error) lines.push(`    undecodable: ${sub.error.message}`);
    if (sub.blob) lines.push(...formatBlob(sub.blob).map((l) => `    ${l}`));
  }
  return lines.join("\n");
}

function formatBlob(blob: KhoBlob): string[] {
  switch (blob.kind) {
    case "kexec-metadata":
      return [
        `kexec-metadata v${blob.version}: previous release "${blob.previousRelease}", kexec count ${blob.kexecCount}`,
      ];
    case "memblock":
      return [
        `memblock-v1: ${blob.regions.length} reserve_mem region(s)`,
        ...blob.regions.map((r) => `  "${r.name}": ${hex(r.start)} + ${hex(r.size)} (${humanSize(r.size)})`),
      ];
    case "kho-test":
      return [
        `kho-test-v1: ${blob.nrFolios} folios, csum ${hex(blob.csum)}, folio list at ${hex(blob.foliosInfo.first)}`,
        ...(blob.folios ? [`  orders: ${orderHistogram(blob.folios)}`] : []),
      ];
    case "luo": {
      const out = [
        `${blob.compatible}: liveupdate number ${blob.liveupdateNum}, sessions at ${hex(blob.sessionsPa)}, FLBs at ${hex(blob.flbsPa)}`,
      ];
      for (const s of blob.sessions ?? []) {
        out.push(`  session "${s.name}": ${s.files.length} file(s)`);
        for (const f of s.files) {
          const m = f.memfd;
          const detail = m
            ? `: size ${m.size}, pos ${m.pos}, seals ${sealNames(m.seals)}, ${m.nrFolios} folio(s)`
            : "";
          out.push(`    token ${hex(f.token)} ${f.compatible} data ${hex(f.data)}${detail}`);
        }
      }
      for (const f of blob.flbs ?? []) out.push(`  FLB "${f.name}": data ${hex(f.data)}, ${f.count} file(s)`);
      return out;
    }
    case "unknown":
      return [`unknown blob, first bytes ${hexBytes(blob.head)}`];
  }
}

function orderHistogram(chunks: readonly PreservedChunk[]): string {
  const counts = new Map<number, number>();
  for (const c of chunks) counts.set(c.order, (counts.get(c.order) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([order, n]) => `${n}x order ${order}`)
    .join(", ");
}

const vmallocJson = (v: KhoVmalloc): JsonValue => ({
  first: hex(v.first),
  totalPages: v.totalPages,
  flags: v.flags,
  order: v.order,
});
/** Counts are JSON numbers; a corrupt one too large for a double stays exact as a hex string. */
const countJson = (v: bigint): JsonValue => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : hex(v));
const chunkJson = (c: PreservedChunk): JsonValue => ({ phys: hex(c.phys), order: c.order });

function blobJson(blob: KhoBlob): JsonValue {
  switch (blob.kind) {
    case "kexec-metadata":
      return { ...blob };
    case "memblock":
      return {
        kind: blob.kind,
        regions: blob.regions.map((r) => ({ name: r.name, start: hex(r.start), size: hex(r.size) })),
      };
    case "kho-test":
      return {
        kind: blob.kind,
        nrFolios: blob.nrFolios,
        csum: hex(blob.csum),
        foliosInfo: vmallocJson(blob.foliosInfo),
        ...(blob.folios ? { folios: blob.folios.map(chunkJson) } : {}),
      };
    case "luo":
      return {
        kind: blob.kind,
        compatible: blob.compatible,
        liveupdateNum: countJson(blob.liveupdateNum),
        sessionsPa: hex(blob.sessionsPa),
        flbsPa: hex(blob.flbsPa),
        sessions: (blob.sessions ?? []).map((s) => ({
          name: s.name,
          files: s.files.map((f) => ({
            compatible: f.compatible,
            data: hex(f.data),
            token: hex(f.token),
            ...(f.memfd ? { memfd: memfdJson(f.memfd) } : {}),
          })),
        })),
        flbs: (blob.flbs ?? []).map((f) => ({ name: f.name, data: hex(f.data), count: countJson(f.count) })),
      };
    case "unknown":
      return { kind: blob.kind, head: hexBytes(blob.head) };
  }
}

function memfdJson(m: MemfdSer): JsonValue {
  return {
    pos: hex(m.pos),
    size: hex(m.size),
    seals: sealNames(m.seals),
    flags: m.flags,
    nrFolios: countJson(m.nrFolios),
    folios: vmallocJson(m.folios),
    ...(m.folioList
      ? { folioList: m.folioList.map((f) => ({ pfn: hex(f.pfn), flags: f.flags, index: hex(f.index) })) }
      : {}),
  };
}

/** The JSON document `kho inspect-fdt --json` prints. Addresses are "0x..." strings (u64 exceeds JSON numbers). */
export function toJson(decoded: DecodedKho): JsonValue {
  const nodes: JsonValue[] = [];
  const visit = (node: FdtNode): void => {
    const properties: { [key: string]: JsonValue } = {};
    for (const [name, value] of node.props) properties[name] = describeProp(node.path, name, value);
    const sub = decoded.subtrees.find((s) => s.node === node);
    nodes.push({
      path: node.path,
      properties,
      ...(sub?.blob ? { blob: blobJson(sub.blob) } : {}),
      ...(sub?.error ? { error: sub.error.message } : {}),
    });
    node.children.forEach(visit);
  };
  visit(decoded.fdt.root);
  return {
    abi: decoded.abi,
    preservedMemoryMap: hex(decoded.preservedMemoryMap),
    nodes,
    ...(decoded.preservedMemory
      ? {
          preservedMemory: {
            chunks: decoded.preservedMemory.map(chunkJson),
            ranges: preservedRanges(decoded.preservedMemory).map((r) => ({
              start: hex(r.start),
              end: hex(r.end),
            })),
          },
        }
      : {}),
    ...(decoded.preservedMemoryError ? { preservedMemoryError: decoded.preservedMemoryError.message } : {}),
  };
}
