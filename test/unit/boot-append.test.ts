// `kho run --append`: the user's parameters come after the variant's, on every guest of the run.
import { describe, expect, it } from "vitest";
import { bootAppendOf } from "../../src/orchestrate/runner.js";
import { KERNEL_VARIANTS } from "../../src/kernel/variants.js";

describe("bootAppendOf", () => {
  it("adds nothing without a variant's parameters or --append", () => {
    expect(bootAppendOf({})).toEqual({});
    expect(bootAppendOf({ append: "  " })).toEqual({});
  });

  it("gives --append to every guest, after a variant's own (which depend on its memory)", () => {
    expect(bootAppendOf({ append: "virtio_net.napi_tx=1" }).bootAppend?.(1024)).toBe("virtio_net.napi_tx=1");
    const variant = KERNEL_VARIANTS.debug.append?.(2048);
    expect(variant).toMatch(/^kho_scratch=/);
    expect(bootAppendOf({ variant: "debug", append: "memblock=debug" }).bootAppend?.(2048)).toBe(
      `${variant} memblock=debug`,
    );
    expect(bootAppendOf({ variant: "debug" }).bootAppend?.(2048)).toBe(variant);
  });
});
