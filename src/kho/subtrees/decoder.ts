// The contract of a subtree decoder: which KHO subtrees it claims, how it decodes their blob, and
// how the result is shown as text and JSON. registry.ts lists the decoders; each lives in its own
// module next to this one.

import type { JsonValue, PhysMemory } from "../blob.js";
import type { KhoSubtree } from "../root-fdt.js";

/** A decoded blob. `kind` is unique across the registry: format and toJson are found by it. */
export interface KindedBlob {
  readonly kind: string;
}

/** A subtree's blob as read from guest memory, handed to the decoder that claims the subtree. */
export interface SubtreeInput {
  /** The subtree's node in the root FDT: name, blob address, blob-size. */
  readonly subtree: KhoSubtree;
  /** The blob: `blob-size` bytes at `subtree.phys` (for kho-v2, the FDT's own totalsize). */
  readonly bytes: Uint8Array;
  /** Guest memory, for the structures the blob points to. */
  readonly memory: PhysMemory;
  /** Largest array the decoder may read from memory beyond the blob itself. */
  readonly maxArrayBytes: number;
}

export interface SubtreeDecoder<B extends KindedBlob = KindedBlob> {
  /**
   * Subtree node names this decoder claims: the name its kernel user passes to kho_add_subtree().
   * The kernel finds subtrees by name only (kho_retrieve_subtree()), and so does the registry; a
   * blob's own compatible or version is the decoder's to check.
   */
  readonly names: readonly string[];
  /** The `kind` of every blob `decode` returns. */
  readonly kind: B["kind"];
  /** Throws a DecodeError (a KhoBlobError where an address is known) when the blob is malformed. */
  decode(input: SubtreeInput): B | Promise<B>;
  /** Lines for formatKhoTree, unindented: the tree indents them under the subtree's node. */
  format(blob: B): string[];
  /** The `blob` member of the subtree's node in toJson. */
  toJson(blob: B): JsonValue;
}
