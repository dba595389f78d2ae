// The subtree decoders this harness knows, and the dispatch over them: a subtree is decoded by the
// decoder claiming its name (the unknown fallback when none does), and a decoded blob is shown by
// the decoder of its kind. To add a subtree: write its module (decoder.ts says what it provides)
// and list its decoder in SUBTREE_DECODERS. KhoBlob follows from the list.

import { type JsonValue, KhoBlobError, type PhysMemory } from "../blob.js";
import type { KhoSubtree } from "../root-fdt.js";
import type { KindedBlob, SubtreeDecoder } from "./decoder.js";
import { kexecMetadataSubtree } from "./kexec-metadata.js";
import { luoSubtree } from "./luo.js";
import { memblockSubtree } from "./memblock.js";
import { khoTestSubtree } from "./test-kho.js";
import { type UnknownBlob, unknownSubtree } from "./unknown.js";

/** Every subtree decoder, in no particular order (dispatch is by name). */
export const SUBTREE_DECODERS = [kexecMetadataSubtree, memblockSubtree, luoSubtree, khoTestSubtree] as const;

/** What a decoder's `decode` returns. */
export type BlobOf<D> = D extends SubtreeDecoder<infer B> ? B : never;

/** A decoded subtree blob: what one of SUBTREE_DECODERS returns, or an unknown blob. */
export type KhoBlob = BlobOf<(typeof SUBTREE_DECODERS)[number]> | UnknownBlob;

export interface SubtreeRegistry<B extends KindedBlob> {
  /** The decoder claiming a subtree name, or the unknown fallback. */
  readonly decoderFor: (name: string) => SubtreeDecoder;
  /** Read the blob a subtree points at, at most `maxBlob` bytes, and decode it. */
  readonly decode: (subtree: KhoSubtree, memory: PhysMemory, maxBlob: number) => Promise<B>;
  /** Lines for formatKhoTree, by the decoder of the blob's kind. */
  readonly format: (blob: B) => string[];
  /** The blob's JSON, by the decoder of its kind. */
  readonly toJson: (blob: B) => JsonValue;
}

/** A registry over `decoders`; a name or kind claimed twice is a programming error. */
export function createSubtreeRegistry<const D extends readonly SubtreeDecoder[]>(
  decoders: D,
): SubtreeRegistry<BlobOf<D[number]> | UnknownBlob> {
  type B = BlobOf<D[number]> | UnknownBlob;
  const byName = new Map<string, SubtreeDecoder>();
  const byKind = new Map<string, SubtreeDecoder>([[unknownSubtree.kind, unknownSubtree]]);
  for (const d of decoders) {
    for (const name of d.names) {
      const other = byName.get(name);
      if (other) throw new Error(`subtree "${name}" is claimed by both ${other.kind} and ${d.kind}`);
      byName.set(name, d);
    }
    if (byKind.has(d.kind)) throw new Error(`two subtree decoders return blobs of kind ${d.kind}`);
    byKind.set(d.kind, d);
  }
  const decoderFor = (name: string): SubtreeDecoder => byName.get(name) ?? unknownSubtree;
  const ofKind = (blob: KindedBlob): SubtreeDecoder => {
    const d = byKind.get(blob.kind);
    if (!d) throw new Error(`no subtree decoder for blob kind ${blob.kind}`);
    return d;
  };
  return {
    decoderFor,
    decode: async (subtree, memory, maxBlob) => {
      const size = subtree.size ?? (await fdtSizeAt(memory, subtree.phys));
      if (size > BigInt(maxBlob)) {
        throw new KhoBlobError(
          "kho",
          subtree.phys,
          0,
          `blob-size ${size} of "${subtree.name}" exceeds the ${maxBlob}-byte limit`,
        );
      }
      const bytes = await memory.readPhys(subtree.phys, Number(size));
      // The decoder claiming the name returns its own kind, one of B's members.
      return (await decoderFor(subtree.name).decode({
        subtree,
        bytes,
        memory,
        maxArrayBytes: maxBlob * 64,
      })) as B;
    },
    format: (blob) => ofKind(blob).format(blob),
    toJson: (blob) => ofKind(blob).toJson(blob),
  };
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

/** The registry decodeKho, formatKhoTree and toJson use. */
export const KHO_SUBTREES: SubtreeRegistry<KhoBlob> = createSubtreeRegistry(SUBTREE_DECODERS);
