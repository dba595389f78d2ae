// The subtree registry: a subtree is decoded by the decoder claiming its name, an unclaimed one is
// an unknown blob, and a decoded blob is formatted and turned into JSON by the decoder of its kind.
import { describe, expect, expectTypeOf, it } from "vitest";
import { fdtNode, leU64, strings, writeFdt } from "../../src/fdt/writer.js";
import {
  type KexecMetadata,
  type KhoBlob,
  type KhoSubtree,
  type KhoTestState,
  type LuoState,
  type MemblockState,
  type PhysMemory,
  type UnknownBlob,
  decodeKho,
  formatKhoTree,
  toJson,
} from "../../src/kho/abi.js";
import type { SubtreeDecoder } from "../../src/kho/subtrees/decoder.js";
import { kexecMetadataSubtree } from "../../src/kho/subtrees/kexec-metadata.js";
import { luoSubtree } from "../../src/kho/subtrees/luo.js";
import { KHO_SUBTREES, SUBTREE_DECODERS, createSubtreeRegistry } from "../../src/kho/subtrees/registry.js";
import { unknownSubtree } from "../../src/kho/subtrees/unknown.js";

/** Guest memory holding `bytes` at `base`, nothing else. */
const memoryAt = (base: bigint, bytes: Uint8Array): PhysMemory => ({
  readPhys: (paddr, length) => {
    const at = Number(paddr - base);
    if (paddr < base || at + length > bytes.length) return Promise.reject(new Error("unmapped"));
    return Promise.resolve(bytes.slice(at, at + length));
  },
});

const subtree = (name: string, phys: bigint, size: number): KhoSubtree => ({
  name,
  phys,
  size: BigInt(size),
  node: {} as never,
});

/** A subtree a kernel user might add: one little-endian u32 counter. */
interface CounterBlob {
  readonly kind: "counter";
  readonly value: number;
}
const counterSubtree: SubtreeDecoder<CounterBlob> = {
  names: ["counter", "counter-old"],
  kind: "counter",
  decode: ({ bytes }) => ({
    kind: "counter",
    value: new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true),
  }),
  format: (blob) => [`counter: ${blob.value}`],
  toJson: (blob) => ({ kind: blob.kind, value: blob.value }),
};

describe("subtree registry", () => {
  it("finds each listed decoder by every name it claims, and the unknown fallback for the rest", () => {
    for (const d of SUBTREE_DECODERS)
      for (const name of d.names) expect(KHO_SUBTREES.decoderFor(name)).toBe(d);
    expect(KHO_SUBTREES.decoderFor("LUO")).toBe(luoSubtree);
    expect(KHO_SUBTREES.decoderFor("kexec-metadata")).toBe(kexecMetadataSubtree);
    // Names are matched exactly, as kho_retrieve_subtree() does.
    expect(KHO_SUBTREES.decoderFor("luo")).toBe(unknownSubtree);
    expect(KHO_SUBTREES.decoderFor("counter")).toBe(unknownSubtree);
  });

  it("decodes, formats and serializes a registered subtree through its own decoder", async () => {
    const registry = createSubtreeRegistry([counterSubtree]);
    const mem = memoryAt(0x1000n, new Uint8Array([42, 0, 0, 0, 0xde, 0xad]));
    for (const name of ["counter", "counter-old"]) {
      const blob = await registry.decode(subtree(name, 0x1000n, 4), mem, 1 << 20);
      expect(blob).toEqual({ kind: "counter", value: 42 });
      expect(registry.format(blob)).toEqual(["counter: 42"]);
      expect(registry.toJson(blob)).toEqual({ kind: "counter", value: 42 });
    }
  });

  it("decodes an unregistered subtree as an unknown blob of its first bytes", async () => {
    const registry = createSubtreeRegistry([counterSubtree]);
    const mem = memoryAt(0x1000n, new Uint8Array([42, 0, 0, 0, 0xde, 0xad]));
    const blob = await registry.decode(subtree("LUO", 0x1000n, 6), mem, 1 << 20);
    expect(blob).toEqual({ kind: "unknown", head: new Uint8Array([42, 0, 0, 0, 0xde, 0xad]) });
    expect(registry.format(blob)).toEqual(["unknown blob, first bytes 2a000000dead"]);
    expect(registry.toJson(blob)).toEqual({ kind: "unknown", head: "2a000000dead" });
    // The blob-size limit holds whoever decodes the blob.
    await expect(registry.decode(subtree("counter", 0x1000n, 6), mem, 4)).rejects.toThrow(
      'blob-size 6 of "counter" exceeds the 4-byte limit',
    );
  });

  it("refuses a name or a kind claimed twice", () => {
    expect(() => createSubtreeRegistry([counterSubtree, { ...counterSubtree, kind: "other" }])).toThrow(
      'subtree "counter" is claimed by both counter and other',
    );
    expect(() => createSubtreeRegistry([counterSubtree, { ...counterSubtree, names: ["x"] }])).toThrow(
      "two subtree decoders return blobs of kind counter",
    );
    expect(() => createSubtreeRegistry([{ ...counterSubtree, kind: "unknown" }])).toThrow(/kind unknown/);
  });

  it("drives decodeKho: a known name is decoded by its decoder, an unknown one kept as bytes", async () => {
    const meta = new Uint8Array(73);
    new DataView(meta.buffer).setUint32(0, 1, true);
    meta.set(new TextEncoder().encode("7.2.13"), 4);
    const base = 0x10_0000n;
    const mem = memoryAt(base, new Uint8Array([...meta, ...Array.from({ length: 55 }, () => 0), 9, 8, 7]));
    const blob = writeFdt(
      fdtNode("", { compatible: strings("kho-v4"), "preserved-memory-map": leU64(0x7000_0000n) }, [
        fdtNode("kexec-metadata", { "preserved-data": leU64(base), "blob-size": leU64(73n) }),
        fdtNode("mystery", { "preserved-data": leU64(base + 128n), "blob-size": leU64(3n) }),
      ]),
    );
    const d = await decodeKho(blob, { memory: mem });
    expect(d.subtrees.map((s) => s.blob?.kind)).toEqual(["kexec-metadata", "unknown"]);
    expect(formatKhoTree(d)).toContain('kexec-metadata v1: previous release "7.2.13", kexec count 0');
    expect(formatKhoTree(d)).toContain("unknown blob, first bytes 090807");
    expect(JSON.stringify(toJson(d))).toContain('"blob":{"kind":"unknown","head":"090807"}');
  });

  it("derives KhoBlob from the registered decoders", () => {
    expectTypeOf<KhoBlob>().toEqualTypeOf<
      KexecMetadata | MemblockState | LuoState | KhoTestState | UnknownBlob
    >();
    expectTypeOf(createSubtreeRegistry([counterSubtree]).format)
      .parameter(0)
      .toEqualTypeOf<CounterBlob | UnknownBlob>();
  });
});
