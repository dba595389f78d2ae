// kho_test (lib/test_kho.c:97-122): FDT "kho-test-v1", magic u32 0x4b484f21, /data { nr_folios u32,
// folios_info struct kho_vmalloc, csum u32 }, all native-endian. The vmalloc'ed array holds one
// u64 per folio: phys | order (order in the bits below PAGE_SHIFT).

import { DecodeError } from "../../errors.js";
import { findNode, parseFdt, propLeU32 } from "../../fdt/reader.js";
import { PAGE_SIZE, type PhysMemory, chunkJson, hex, requireCompatible } from "../blob.js";
import type { PreservedChunk } from "../radix.js";
import { type KhoVmalloc, decodeKhoVmalloc, readKhoVmalloc, vmallocJson } from "../vmalloc.js";
import type { SubtreeDecoder } from "./decoder.js";

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

function orderHistogram(chunks: readonly PreservedChunk[]): string {
  const counts = new Map<number, number>();
  for (const c of chunks) counts.set(c.order, (counts.get(c.order) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([order, n]) => `${n}x order ${order}`)
    .join(", ");
}

export const khoTestSubtree: SubtreeDecoder<KhoTestState> = {
  names: ["kho_test"],
  kind: "kho-test",
  decode: async ({ bytes, memory }) => {
    const state = decodeKhoTestFdt(bytes);
    return { ...state, folios: await readKhoTestFolios(memory, state) };
  },
  format: (blob) => [
    `kho-test-v1: ${blob.nrFolios} folios, csum ${hex(blob.csum)}, folio list at ${hex(blob.foliosInfo.first)}`,
    ...(blob.folios ? [`  orders: ${orderHistogram(blob.folios)}`] : []),
  ],
  toJson: (blob) => ({
    kind: blob.kind,
    nrFolios: blob.nrFolios,
    csum: hex(blob.csum),
    foliosInfo: vmallocJson(blob.foliosInfo),
    ...(blob.folios ? { folios: blob.folios.map(chunkJson) } : {}),
  }),
};
