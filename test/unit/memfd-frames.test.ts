// The host's model of a memfd's bytes (memfdModel) and the boot-1 check that reads a memfd's
// frames from guest memory and compares them with it (firstFrameMismatch).
import { describe, expect, it } from "vitest";
import type { AgentMemfd, PfnRuns } from "../../src/agent/protocol.js";
import { memfdModel, memfdPatternSha256 } from "../../src/agent/model.js";
import type { PhysMemory } from "../../src/kho/abi.js";
import { expectedSha, type SeededMemfd } from "../../src/agent/memfd-args.js";
import { firstFrameMismatch } from "../../src/memory/memfd-frames.js";
import { createHash } from "node:crypto";

const PAGE = 4096;

describe("memfdModel", () => {
  const layouts = [{}, { sparse: 3 }, { truncate: 5 * PAGE + 100 }, { sparse: 2, truncate: 7 * PAGE }];
  it("any range is that slice of the whole file's model, whose SHA-256 is memfdPatternSha256", () => {
    const size = 9 * PAGE + 123;
    for (const layout of layouts) {
      const whole = memfdModel(77n, size, layout, 0, size);
      expect(createHash("sha256").update(whole).digest("hex")).toBe(memfdPatternSha256(77n, size, layout));
      for (const [off, len] of [
        [0, 1],
        [4095, 2],
        [PAGE * 3 + 7, PAGE * 2],
        [size - 10, 10],
        [size - 10, 100], // past the end: cut at the size
      ] as const) {
        expect(Buffer.from(memfdModel(77n, size, layout, off, len))).toEqual(
          Buffer.from(whole.subarray(off, Math.min(off + len, size))),
        );
      }
    }
  });

  it("holes and the part past a truncation are zeros", () => {
    const m = memfdModel(5n, 4 * PAGE, { sparse: 2, truncate: 3 * PAGE }, 0, 4 * PAGE);
    const page = (i: number) => m.subarray(i * PAGE, (i + 1) * PAGE);
    expect(page(0).some((b) => b !== 0)).toBe(true);
    expect(page(1).every((b) => b === 0)).toBe(true); // sparse hole
    expect(page(2).some((b) => b !== 0)).toBe(true);
    expect(page(3).every((b) => b === 0)).toBe(true); // past the truncation
  });
});

/** Guest memory holding `file`'s pages at the frames `pfnOf(page)`. */
function memoryWith(file: Uint8Array, pfnOf: (page: number) => number): PhysMemory & { reads: number } {
  const frames = new Map<number, Uint8Array>();
  for (let p = 0; p * PAGE < file.length; p++) {
    const frame = new Uint8Array(PAGE);
    frame.set(file.subarray(p * PAGE, (p + 1) * PAGE));
    frames.set(pfnOf(p), frame);
  }
  const mem = {
    reads: 0,
    readPhys(paddr: bigint, length: number): Promise<Uint8Array> {
      mem.reads++;
      const out = new Uint8Array(length);
      for (let at = 0; at < length;) {
        const addr = Number(paddr) + at;
        const frame = frames.get(Math.floor(addr / PAGE)) ?? new Uint8Array(PAGE);
        const n = Math.min(PAGE - (addr % PAGE), length - at);
        out.set(frame.subarray(addr % PAGE, (addr % PAGE) + n), at);
        at += n;
      }
      return Promise.resolve(out);
    },
  };
  return mem;
}

describe("firstFrameMismatch", () => {
  const spec: SeededMemfd = { token: 1, size: 6 * PAGE + 500, seed: 1234n };
  // pages 0-2 on frames 0x100-0x102, pages 3-6 on 0x500-0x503
  const pfnOf = (p: number) => (p < 3 ? 0x100 + p : 0x500 + p - 3);
  const runs: PfnRuns = [
    [0x100, 3],
    [0x500, 4],
  ];
  const memfd = { size: spec.size, page_size: PAGE, pages: 7, pages_present: 7, pfns: runs } as AgentMemfd;
  const file = memfdModel(spec.seed, spec.size, {}, 0, spec.size);

  it("finds nothing when every frame holds the model, reading a run of frames at a time", async () => {
    const mem = memoryWith(file, pfnOf);
    expect(await firstFrameMismatch(mem, spec, memfd)).toBeUndefined();
    expect(mem.reads).toBe(2);
    // the model it compared with is the one the SHA-256 checks hash
    expect(expectedSha(spec)).toBe(memfdPatternSha256(spec.seed, spec.size));
  });

  it("compares with a model computed ahead when given one", async () => {
    const mem = memoryWith(file, pfnOf);
    expect(await firstFrameMismatch(mem, spec, memfd, file)).toBeUndefined();
    const wrong = Uint8Array.from(file);
    wrong[5 * PAGE] = (wrong[5 * PAGE] ?? 0) ^ 1;
    expect(await firstFrameMismatch(mem, spec, memfd, wrong)).toBe(5 * PAGE);
  });

  it("names the file offset of the first differing byte", async () => {
    const bad = Uint8Array.from(file);
    bad[4 * PAGE + 17] = (bad[4 * PAGE + 17] ?? 0) ^ 0x40;
    expect(await firstFrameMismatch(memoryWith(bad, pfnOf), spec, memfd)).toBe(4 * PAGE + 17);
  });

  it("catches pages on the wrong frames and a page with no frame", async () => {
    const swapped = (p: number) => (p === 1 ? 0x102 : p === 2 ? 0x101 : pfnOf(p));
    expect(await firstFrameMismatch(memoryWith(file, swapped), spec, memfd)).toBe(PAGE);
    const holed = {
      ...memfd,
      pfns: [
        [0x100, 3],
        [null, 1],
        [0x501, 3],
      ] as PfnRuns,
    };
    expect(await firstFrameMismatch(memoryWith(file, pfnOf), spec, holed)).toBe(3 * PAGE);
  });
});
