// Host-side walker for KHO's preserved-memory map: the radix tree whose root physical address the KHO
// root FDT stores in `preserved-memory-map`. It mirrors the kernel's own reader
// (__kho_radix_walk_tree / kho_radix_walk_leaf) but treats every pointer as untrusted, because the
// tree comes out of a memory dump: pointers must be page-aligned, inside RAM and below the physical
// address width, each page may be used once (no cycles or sharing), and every key must decode to an
// order and an address that exist.
//
// Encoding (Linux 7.2.13, include/linux/kho/abi/kexec_handover.h:180-287 and
// kernel/liveupdate/kexec_handover.c:108-368), with S = PAGE_SHIFT:
//   key(phys, order) = 1 << (64 - S - order) | phys >> (S + order)        (kho_radix_encode_key)
//   order = (64 - S) + 1 - fls64(key); phys = key << (S + order) mod 2^64  (kho_radix_decode_key)
//   leaf (level 0) bit index = key mod 2^(S+3); level-L table index = key >> ((L-1)(S-3) + S+3) mod 2^(S-3)
//   levels: root = KHO_TREE_MAX_DEPTH - 1 down to 1 are tables of 2^(S-3) little-endian u64 physical
//   pointers (0 = empty); level-1 entries point to bitmap leaves of 2^(S+3) bits (bit b = byte b>>3,
//   bit b&7 on little-endian). Every node is one page.

import { DecodeError } from "../errors.js";

/** Root FDT compatibles this harness decodes, newest first. All share the radix-tree memory map. */
export const KHO_ABIS = ["kho-v4", "kho-v3", "kho-v2"] as const;
export type KhoAbi = (typeof KHO_ABIS)[number];

export function isKhoAbi(value: string): value is KhoAbi {
  return (KHO_ABIS as readonly string[]).includes(value);
}

/**
 * A KHO version this harness cannot read. kho-v1 (Linux 6.16-6.18) used a linked list of per-order
 * bitmap chunks whose bitmap size changed (512*8 bits, later PAGE_SIZE*8) without a version bump, so
 * the compatible string alone does not say how to read it.
 */
export class UnsupportedKhoAbiError extends DecodeError {
  override readonly name: string = "UnsupportedKhoAbiError";
  constructor(
    readonly compatible: string,
    offset = 0,
  ) {
    super(
      "kho",
      offset,
      `KHO ABI ${compatible} is not supported by this harness (supported: ${KHO_ABIS.join(", ")})`,
    );
  }
}

export function parseKhoAbi(compatible: string, offset = 0): KhoAbi {
  if (!isKhoAbi(compatible)) throw new UnsupportedKhoAbiError(compatible, offset);
  return compatible;
}

/** A corrupt tree: names the physical address of the table or leaf page and the level it was read at. */
export class RadixTreeError extends DecodeError {
  override readonly name: string = "RadixTreeError";
  constructor(
    /** Physical address of the table (level >= 1) or leaf (level 0) page holding the bad entry. */
    readonly tablePhys: bigint,
    readonly level: number,
    /** Byte offset of the bad entry inside that page. */
    offset: number,
    reason: string,
  ) {
    super(
      "kho-radix",
      offset,
      `level-${level} ${level === 0 ? "leaf" : "table"} at ${hex(tablePhys)}: ${reason}`,
    );
  }
}

const hex = (n: bigint | number): string => `0x${n.toString(16)}`;

export interface RadixGeometry {
  readonly pageShift: number;
  readonly pageSize: number;
  /** KHO_ORDER_0_LOG2: position of the order bit for order 0 (64 - PAGE_SHIFT). */
  readonly order0Log2: number;
  /** KHO_TABLE_SIZE_LOG2: log2 of u64 entries per table page. */
  readonly tableSizeLog2: number;
  /** KHO_BITMAP_SIZE_LOG2: log2 of bits per leaf page. */
  readonly bitmapSizeLog2: number;
  /** KHO_TREE_MAX_DEPTH: table levels plus the leaf level; the root table is level depth-1. */
  readonly depth: number;
}

const divRoundUp = (a: number, b: number): number => Math.ceil(a / b);

/**
 * The tree shape for a page size. kho-v4 computes the depth as
 * DIV_ROUND_UP(ORDER_0 - BITMAP + 1, TABLE) + 1 (abi/kexec_handover.h:274-276); the kho-v2 header
 * had no "+ 1". Both give 6 levels for 4 KiB pages and 4 for 64 KiB, but differ for 16 KiB; since I
 * could not confirm which formula kho-v3 used, 16 KiB pages are refused for kho-v2/v3.
 */
export function radixGeometry(pageShift = 12, abi: KhoAbi = "kho-v4"): RadixGeometry {
  if (![12, 14, 16].includes(pageShift)) {
    throw new DecodeError("kho-radix", 0, `page shift ${pageShift} is not 12, 14 or 16 (4K/16K/64K pages)`);
  }
  const order0Log2 = 64 - pageShift;
  const tableSizeLog2 = pageShift - 3;
  const bitmapSizeLog2 = pageShift + 3;
  const depthV4 = divRoundUp(order0Log2 - bitmapSizeLog2 + 1, tableSizeLog2) + 1;
  const depthV2 = divRoundUp(order0Log2 - bitmapSizeLog2, tableSizeLog2) + 1;
  if (abi !== "kho-v4" && depthV2 !== depthV4) {
    throw new DecodeError(
      "kho-radix",
      0,
      `the ${abi} tree depth for ${1 << (pageShift - 10)} KiB pages is ambiguous (${depthV2} or ${depthV4} levels)`,
    );
  }
  return { pageShift, pageSize: 1 << pageShift, order0Log2, tableSizeLog2, bitmapSizeLog2, depth: depthV4 };
}

const MASK64 = (1n << 64n) - 1n;

/** kho_radix_encode_key. `phys` must be aligned to the chunk size. */
export function encodeRadixKey(phys: bigint, order: number, g: RadixGeometry): bigint {
  if (order < 0 || order > g.order0Log2) throw new RangeError(`order ${order} out of range`);
  return (1n << BigInt(g.order0Log2 - order)) | (phys >> BigInt(g.pageShift + order));
}

/** kho_radix_decode_key; undefined for key 0, which has no order bit. */
export function decodeRadixKey(key: bigint, g: RadixGeometry): PreservedChunk | undefined {
  if (key <= 0n || key >> BigInt(g.order0Log2 + 1) !== 0n) return undefined;
  const order = g.order0Log2 + 1 - key.toString(2).length;
  return { phys: (key << BigInt(g.pageShift + order)) & MASK64, order };
}

/** kho_radix_get_table_index: bit position of the level-L index field inside a key. */
export function tableShift(level: number, g: RadixGeometry): number {
  return (level - 1) * g.tableSizeLog2 + g.bitmapSizeLog2;
}

/** One preserved chunk: 2^order pages starting at phys (naturally aligned). */
export interface PreservedChunk {
  readonly phys: bigint;
  readonly order: number;
}

export interface RadixWalkOptions {
  /** Physical address of the root table (the FDT's preserved-memory-map). */
  readonly root: bigint;
  /** Returns the page at a page-aligned physical address (e.g. ElfReader.readPhys(p, pageSize)). */
  readonly readPage: (paddr: bigint) => Promise<Uint8Array>;
  /** Whether a page-aligned physical address is RAM; table pointers elsewhere are corrupt. */
  readonly isRam: (paddr: bigint) => boolean;
  readonly abi?: KhoAbi;
  /** PAGE_SHIFT of the kernel that wrote the tree. Default 12. */
  readonly pageShift?: number;
  /** Physical address width; pointer and chunk bits above it are reserved. Default 52 (x86_64, arm64 LPA). */
  readonly physAddrBits?: number;
  /** Give up after reading this many tree pages. Default 65536 (enough for 8 TiB of order-0 pages). */
  readonly maxPages?: number;
  /** Give up after this many chunks. Default 2^24. */
  readonly maxChunks?: number;
}

/** Every preserved chunk in the tree, sorted by address then order. */
export async function walkRadixTree(options: RadixWalkOptions): Promise<PreservedChunk[]> {
  const g = radixGeometry(options.pageShift ?? 12, options.abi ?? "kho-v4");
  const physLimit = 1n << BigInt(options.physAddrBits ?? 52);
  const maxPages = options.maxPages ?? 1 << 16;
  const maxChunks = options.maxChunks ?? 1 << 24;
  const entries = 1 << g.tableSizeLog2;
  const pageMask = BigInt(g.pageSize - 1);
  const visited = new Set<bigint>();
  const chunks: PreservedChunk[] = [];

  /** Validate a pointer found at `entry` of the page `from` (level `level`), or the root itself. */
  const checkPointer = (
    ptr: bigint,
    from: bigint,
    level: number,
    entry: number,
    ancestors: bigint[],
  ): void => {
    const err = (reason: string): never => {
      throw new RadixTreeError(from, level, Math.max(0, entry * 8), reason);
    };
    const what = entry < 0 ? "root pointer" : `entry ${entry} (${hex(ptr)})`;
    if (ptr & pageMask) err(`${what} is not page-aligned`);
    if (ptr >= physLimit) err(`${what} sets reserved bits above bit ${(options.physAddrBits ?? 52) - 1}`);
    if (!options.isRam(ptr)) err(`${what} points outside RAM`);
    if (ancestors.includes(ptr)) err(`${what} points back to an ancestor page (cycle)`);
    if (visited.has(ptr)) err(`${what} points to a page already used elsewhere in the tree`);
    if (visited.size >= maxPages) err(`tree has more than ${maxPages} pages`);
    visited.add(ptr);
  };

  const read = async (paddr: bigint, level: number): Promise<Uint8Array> => {
    const page = await options.readPage(paddr);
    if (page.length !== g.pageSize) {
      throw new RadixTreeError(paddr, level, 0, `read returned ${page.length} bytes, expected ${g.pageSize}`);
    }
    return page;
  };

  const walkLeaf = async (leafPhys: bigint, prefix: bigint): Promise<void> => {
    const leaf = await read(leafPhys, 0);
    for (let byte = 0; byte < leaf.length; byte++) {
      const bits = leaf[byte] ?? 0;
      if (bits === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        if (!(bits & (1 << bit))) continue;
        const key = prefix | BigInt(byte * 8 + bit);
        const chunk = decodeRadixKey(key, g);
        const err = (reason: string): never => {
          throw new RadixTreeError(leafPhys, 0, byte, `bit ${byte * 8 + bit} (key ${hex(key)}) ${reason}`);
        };
        if (!chunk) return err("has no order bit");
        if (chunk.phys + (BigInt(g.pageSize) << BigInt(chunk.order)) > physLimit) {
          err(
            `decodes to an order-${chunk.order} chunk at ${hex(chunk.phys)} beyond the physical address space`,
          );
        }
        if (chunks.length >= maxChunks) err(`tree holds more than ${maxChunks} chunks`);
        chunks.push(chunk);
      }
    }
  };

  const walkTable = async (
    tablePhys: bigint,
    level: number,
    prefix: bigint,
    ancestors: bigint[],
  ): Promise<void> => {
    const table = await read(tablePhys, level);
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    const shift = BigInt(tableShift(level, g));
    const path = [...ancestors, tablePhys];
    for (let i = 0; i < entries; i++) {
      const ptr = view.getBigUint64(i * 8, true);
      if (ptr === 0n) continue;
      const key = prefix | (BigInt(i) << shift);
      // Key bits above the order-0 order bit can never be set (bits 63:53 for 4K pages).
      if (key >> BigInt(g.order0Log2 + 1) !== 0n) {
        throw new RadixTreeError(
          tablePhys,
          level,
          i * 8,
          `entry ${i} is set but its index sets reserved key bits`,
        );
      }
      checkPointer(ptr, tablePhys, level, i, path);
      if (level === 1) await walkLeaf(ptr, key);
      else await walkTable(ptr, level - 1, key, path);
    }
  };

  if (options.root === 0n)
    throw new RadixTreeError(0n, g.depth - 1, 0, "preserved-memory-map is 0 (no tree)");
  checkPointer(options.root, options.root, g.depth - 1, -1, []);
  await walkTable(options.root, g.depth - 1, 0n, []);
  return chunks.sort((a, b) => (a.phys < b.phys ? -1 : a.phys > b.phys ? 1 : a.order - b.order));
}

/** Bytes covered by a chunk. */
export function chunkSize(chunk: PreservedChunk, pageShift = 12): bigint {
  return 1n << BigInt(pageShift + chunk.order);
}

/** Merge sorted chunks into [start, end) ranges of contiguous preserved memory, for display. */
export function preservedRanges(
  chunks: readonly PreservedChunk[],
  pageShift = 12,
): { start: bigint; end: bigint }[] {
  const out: { start: bigint; end: bigint }[] = [];
  for (const c of chunks) {
    const end = c.phys + chunkSize(c, pageShift);
    const last = out[out.length - 1];
    if (last && c.phys <= last.end) last.end = end > last.end ? end : last.end;
    else out.push({ start: c.phys, end });
  }
  return out;
}
