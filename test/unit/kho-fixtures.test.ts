// Golden vectors: KHO root FDTs the harness captured from real guests (kho/in/fdt of the kernel
// after a kexec; see test/fixtures/README.md). The values below were read off `dtc -I dtb -O dts`
// of the same files, byte-swapped (KHO writes raw little-endian u64s).
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { decodeKhoFdt } from "../../src/kho/abi.js";

const fixture = (name: string) => readFile(new URL(`../fixtures/kho/${name}`, import.meta.url));

describe("real KHO FDTs from guests", () => {
  it("arm64, memfd-basic: kho-v4 root with LUO, kho_test and kexec-metadata subtrees", async () => {
    const root = decodeKhoFdt(await fixture("arm64-memfd-basic-in.dtb"));
    expect(root.abi).toBe("kho-v4");
    expect(root.preservedMemoryMap).toBe(0x41cd0000n);
    const subtrees = Object.fromEntries(root.subtrees.map((s) => [s.name, [s.phys, s.size]]));
    expect(subtrees).toEqual({
      LUO: [0x43b83000n, 32n],
      kho_test: [0x41e1e000n, 240n],
      "kexec-metadata": [0x427a3000n, 73n],
    });
  });

  it("x86_64, memfd-basic: the same ABI and subtrees, at x86 addresses", async () => {
    const root = decodeKhoFdt(await fixture("x86_64-memfd-basic-in.dtb"));
    expect(root.abi).toBe("kho-v4");
    expect(root.preservedMemoryMap).toBe(0x12e0000n);
    const subtrees = Object.fromEntries(root.subtrees.map((s) => [s.name, [s.phys, s.size]]));
    expect(subtrees).toEqual({
      LUO: [0x1b28000n, 32n],
      kho_test: [0x19c6000n, 240n],
      "kexec-metadata": [0x1320000n, 73n],
    });
  });
});
