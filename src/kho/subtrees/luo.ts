// LUO (abi/luo.h, abi/block.h, abi/memfd.h). luo_ser {char compatible[8]; u64 liveupdate_num;
// u64 sessions_pa; u64 flbs_pa}. Sessions and files live in block chains: one preserved page per block,
// {u64 next; u64 count} then `count` packed entries; luo_session_ser is 80 bytes {char name[64];
// u64 files; u64 count}, luo_file_ser is 64 bytes {char compatible[48]; u64 data; u64 token}.
// A "memfd-v2" file's data points at its memfd_luo_ser, decoded here too.

import {
  type JsonValue,
  KhoBlobError,
  PAGE_SIZE,
  type PhysMemory,
  countJson,
  hex,
  structReader,
  toSafeNumber,
} from "../blob.js";
import { type KhoVmalloc, decodeKhoVmalloc, readKhoVmalloc, vmallocJson } from "../vmalloc.js";
import type { SubtreeDecoder } from "./decoder.js";

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
  const r = structReader(bytes, "luo", phys);
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
  const r = structReader(bytes, "memfd", phys);
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
    const r = structReader(entry, "luo-sessions", ser.sessionsPa);
    const name = r.chars(0, 64);
    const filesPa = r.u64(64);
    const count = r.u64(72);
    const files: LuoFile[] = [];
    if (filesPa === 0n && count !== 0n) r.fail(72, `session "${name}" has ${count} files but no file blocks`);
    for (const fileEntry of await readBlockChain(mem, filesPa, FILE_SER_SIZE, "luo-files")) {
      const f = structReader(fileEntry, "luo-files", filesPa);
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
    const header = structReader(await mem.readPhys(ser.flbsPa, 16), "luo-flb", ser.flbsPa);
    const pgcnt = header.u64(0);
    const count = header.u64(8);
    if (pgcnt === 0n || pgcnt > 64n) header.fail(0, `pgcnt ${pgcnt} is implausible (the kernel writes 1)`);
    const max = Math.floor((Number(pgcnt) * PAGE_SIZE - 16) / FLB_SER_SIZE);
    if (count > BigInt(max)) header.fail(8, `FLB count ${count} exceeds the ${max} that fit`);
    const body = await mem.readPhys(ser.flbsPa + 16n, Number(count) * FLB_SER_SIZE);
    const r = structReader(body, "luo-flb", ser.flbsPa);
    for (let i = 0; i < Number(count); i++) {
      const at = i * FLB_SER_SIZE;
      flbs.push({ name: r.chars(at, 48), data: r.u64(at + 48), count: r.u64(at + 56) });
    }
  }
  return { kind: "luo", ...ser, sessions, flbs };
}

// ------------------------------------------------------------------------------------------------
// Presentation

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

function formatLuo(blob: LuoState): string[] {
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

function luoJson(blob: LuoState): JsonValue {
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
}

export const luoSubtree: SubtreeDecoder<LuoState> = {
  names: ["LUO"],
  kind: "luo",
  decode: ({ bytes, subtree, memory, maxArrayBytes }) =>
    readLuoState(memory, decodeLuoSer(bytes, subtree.phys), maxArrayBytes),
  format: formatLuo,
  toJson: luoJson,
};
