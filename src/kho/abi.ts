// Decode the KHO handover state: the root FDT (include/linux/kho/abi/kexec_handover.h) and, given a
// way to read guest-physical memory, the sub-blobs its nodes point to, each by the subtree decoder
// that claims it (subtrees/registry.ts: kexec-metadata, memblock, LUO with memfd state, kho_test;
// anything else is an unknown blob). Values are native little-endian, even inside FDT properties.
// Layouts were checked against Linux 7.2.13 (see each decoder's comment); anything that does not
// match is a DecodeError naming the structure's physical address and the offset inside it.
//
// This is the public entry: the parts live in root-fdt.ts, blob.ts, vmalloc.ts and subtrees/, and
// are re-exported here.

import { DecodeError } from "../errors.js";
import { type FdtNode, decodeStringList } from "../fdt/reader.js";
import { type JsonValue, PAGE_SIZE, type PhysMemory, chunkJson, hex, hexBytes, humanSize } from "./blob.js";
import { type PreservedChunk, preservedRanges, walkRadixTree } from "./radix.js";
import { type KhoRootFdt, type KhoSubtree, ROOT_PROPS, SUBTREE_PROPS, decodeKhoFdt } from "./root-fdt.js";
import { KHO_SUBTREES, type KhoBlob } from "./subtrees/registry.js";

export { KHO_ABIS, type KhoAbi, UnsupportedKhoAbiError } from "./radix.js";
export { type JsonValue, KhoBlobError, type PhysMemory } from "./blob.js";
export { type KhoRootFdt, type KhoSubtree, decodeKhoFdt, outFdtRadixRoot } from "./root-fdt.js";
export { type KhoVmalloc, decodeKhoVmalloc, readKhoVmalloc } from "./vmalloc.js";
export type { KhoBlob } from "./subtrees/registry.js";
export type { UnknownBlob } from "./subtrees/unknown.js";
export { KEXEC_METADATA_SIZE, type KexecMetadata, decodeKexecMetadata } from "./subtrees/kexec-metadata.js";
export { type MemblockState, type ReserveMemRegion, decodeMemblockFdt } from "./subtrees/memblock.js";
export { KHO_TEST_MAGIC, type KhoTestState, decodeKhoTestFdt } from "./subtrees/test-kho.js";
export {
  LUO_ABI_COMPATIBLE,
  LUO_SER_SIZE,
  type LuoFile,
  type LuoFlb,
  type LuoSer,
  type LuoSession,
  type LuoState,
  type MemfdFolio,
  type MemfdSer,
  decodeLuoSer,
  decodeMemfdSer,
  readBlockChain,
} from "./subtrees/luo.js";

const DEFAULT_MAX_BLOB = 1 << 20;

// ------------------------------------------------------------------------------------------------
// Whole-state decode

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
      subtrees.push({ ...sub, blob: await KHO_SUBTREES.decode(sub, mem, maxBlob) });
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

// ------------------------------------------------------------------------------------------------
// Presentation: a readable tree for humans and a JSON document for `kho inspect-fdt --json`.

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
    if (sub.blob) lines.push(...KHO_SUBTREES.format(sub.blob).map((l) => `    ${l}`));
  }
  return lines.join("\n");
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
      ...(sub?.blob ? { blob: KHO_SUBTREES.toJson(sub.blob) } : {}),
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
