// The KHO root FDT (include/linux/kho/abi/kexec_handover.h): its compatible, the radix tree root and
// one node per subtree pointing at a blob in guest memory; also the radix root read off the old
// kernel's truncated kho/out/fdt. Values are native little-endian, even inside FDT properties.
// What the subtree decoders share is in blob.ts; the decoders themselves in subtrees/.

import { DecodeError } from "../errors.js";
import {
  FDT_BEGIN_NODE,
  FDT_MAGIC,
  FDT_NOP,
  FDT_PROP,
  type Fdt,
  type FdtNode,
  decodeStringList,
  parseFdt,
  propLeU64,
} from "../fdt/reader.js";
import { type KhoAbi, isKhoAbi, parseKhoAbi } from "./radix.js";

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

export const ROOT_PROPS = new Set(["compatible", "preserved-memory-map"]);
export const SUBTREE_PROPS = new Set(["preserved-data", "blob-size"]);

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
