import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fuzzDecodeErrorsOnly } from "./helpers/fuzz.js";
import { fdtNode, leU64, strings, writeFdt } from "../../src/fdt/writer.js";
import { decodeKhoFdt, outFdtRadixRoot } from "../../src/kho/abi.js";

const fixture = (name: string) =>
  new Uint8Array(readFileSync(new URL(`../fixtures/kho/${name}`, import.meta.url)));

describe("the radix root from the old kernel's truncated kho/out/fdt", () => {
  // Read from a real guest before kexec: 233 bytes of a 345-byte FDT, strings block missing.
  it.each([
    ["arm64", 0x41e83000n],
    ["x86_64", 0x01108000n],
  ])("%s: finds preserved-memory-map although its name lies past the end", (arch, root) => {
    const blob = fixture(`${arch}-out-fdt-truncated.dtb`);
    expect(() => decodeKhoFdt(blob)).toThrow(/truncated FDT/);
    expect(outFdtRadixRoot(blob)).toEqual({ abi: "kho-v4", root });
  });

  it("agrees with the full decoder on a complete FDT (names readable)", () => {
    const blob = fixture("arm64-memfd-basic-in.dtb");
    expect(outFdtRadixRoot(blob).root).toBe(decodeKhoFdt(blob).preservedMemoryMap);
  });

  it("refuses a root with two unnamed 8-byte properties, a zero root or an unknown ABI", () => {
    const make = (props: Record<string, Uint8Array>) => writeFdt(fdtNode("", props, []));
    const cut = (b: Uint8Array) => b.subarray(0, new DataView(b.buffer, b.byteOffset).getUint32(12, false));
    const two = cut(make({ compatible: strings("kho-v4"), a: leU64(0x1000n), b: leU64(0x2000n) }));
    expect(() => outFdtRadixRoot(two)).toThrow(/no single preserved-memory-map among 2/);
    const zero = make({ compatible: strings("kho-v4"), "preserved-memory-map": leU64(0n) });
    expect(() => outFdtRadixRoot(zero)).toThrow(/preserved-memory-map is 0/);
    const v9 = make({ compatible: strings("kho-v9"), "preserved-memory-map": leU64(0x1000n) });
    expect(() => outFdtRadixRoot(v9)).toThrow(/no KHO compatible/);
  });

  it("fuzz: damaged or cut blobs give DecodeErrors only", () => {
    const blob = fixture("x86_64-out-fdt-truncated.dtb");
    fuzzDecodeErrorsOnly(blob, outFdtRadixRoot, 2000);
  });
});
