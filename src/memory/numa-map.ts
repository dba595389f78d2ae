// The decoded preserved-memory map against the machine's NUMA layout: the node QEMU backs each
// chunk's first and last frame with (src/vm/guest-ram.ts). KHO keeps every preservation inside
// one node (7.2's __kho_preserve_pages_order() shrinks a chunk until it does: "The restore
// machinery can not cope with a preservation spanning multiple NUMA nodes").
import type { PreservedChunk } from "../kho/radix.js";
import { nodeOfAddress, type RamWindow } from "../vm/guest-ram.js";

const PAGE = 4096n;

export interface ChunkNodes {
  readonly chunk: PreservedChunk;
  /** The node of its first frame and of its last (undefined: outside QEMU's RAM). */
  readonly first: number | undefined;
  readonly last: number | undefined;
}

export function chunkNodes(chunks: readonly PreservedChunk[], windows: readonly RamWindow[]): ChunkNodes[] {
  return chunks.map((chunk) => ({
    chunk,
    first: nodeOfAddress(windows, chunk.phys),
    last: nodeOfAddress(windows, chunk.phys + (PAGE << BigInt(chunk.order)) - 1n),
  }));
}

/** The chunk whose frames hold `phys`. */
export function chunkAt(nodes: readonly ChunkNodes[], phys: bigint): ChunkNodes | undefined {
  return nodes.find((n) => phys >= n.chunk.phys && phys < n.chunk.phys + (PAGE << BigInt(n.chunk.order)));
}

/** Chunks that lie on two nodes (or partly outside RAM). */
export function chunksAcrossNodes(nodes: readonly ChunkNodes[]): ChunkNodes[] {
  return nodes.filter((n) => n.first === undefined || n.first !== n.last);
}
