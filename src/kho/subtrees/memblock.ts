// memblock (abi/memblock.h, mm/memblock.c:2557-2614): FDT "memblock-v1", one "reserve-mem-v1" child per
// reserve_mem= region with native u64 start and size.

import { parseFdt, propLeU64 } from "../../fdt/reader.js";
import { hex, humanSize, requireCompatible } from "../blob.js";
import type { SubtreeDecoder } from "./decoder.js";

export interface ReserveMemRegion {
  readonly name: string;
  readonly start: bigint;
  readonly size: bigint;
}

export interface MemblockState {
  readonly kind: "memblock";
  readonly regions: readonly ReserveMemRegion[];
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

export const memblockSubtree: SubtreeDecoder<MemblockState> = {
  names: ["memblock"],
  kind: "memblock",
  decode: ({ bytes }) => decodeMemblockFdt(bytes),
  format: (blob) => [
    `memblock-v1: ${blob.regions.length} reserve_mem region(s)`,
    ...blob.regions.map((r) => `  "${r.name}": ${hex(r.start)} + ${hex(r.size)} (${humanSize(r.size)})`),
  ],
  toJson: (blob) => ({
    kind: blob.kind,
    regions: blob.regions.map((r) => ({ name: r.name, start: hex(r.start), size: hex(r.size) })),
  }),
};
