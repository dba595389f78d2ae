import { describe, expect, it } from "vitest";
import { ARCH_NAMES, archSpec, parseArchList } from "../../src/arch.js";

describe("arch table", () => {
  it("answers every per-arch question for both arches", () => {
    expect(archSpec("x86_64")).toMatchObject({
      machine: "q35,i8042=off",
      console: "ttyS0",
      imageTarget: "bzImage",
      debianArch: "amd64",
    });
    expect(archSpec("arm64")).toMatchObject({
      machine: "virt",
      console: "ttyAMA0",
      imageTarget: "Image",
      debianArch: "arm64",
    });
    for (const a of ARCH_NAMES) expect(archSpec(a).name).toBe(a);
  });

  it("parses --arch values and aliases", () => {
    expect(parseArchList("all")).toEqual(["x86_64", "arm64"]);
    expect(parseArchList("aarch64,amd64,arm64")).toEqual(["arm64", "x86_64"]);
    expect(() => parseArchList("riscv64")).toThrow(/unknown arch "riscv64"/);
  });
});
