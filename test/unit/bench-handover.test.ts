// The pure parts of `kho bench handover` (src/bench/handover.ts): sizes as the user gives them,
// what a shape can preserve, the guest's RAM, samples from a run's facts (LUO's pages over the
// nothing-preserved baseline), per-size figures and the A/B comparison over sizes.
import { describe, expect, it } from "vitest";
import type { Fact } from "../../src/api/facts.js";
import {
  comparisonOf,
  figuresOf,
  guestMemoryMiB,
  parseSizes,
  samplesOf,
  sizeProblem,
} from "../../src/bench/handover.js";
import type { HandoverSample } from "../../src/bench/handover-types.js";
import { sizeArg } from "../../src/scenarios/handover-cost.js";
import { HarnessError } from "../../src/errors.js";

const MiB = 1024 * 1024;

describe("sizes and shapes", () => {
  it("parses sizes with K, M, G, sorted and without repeats", () => {
    expect(parseSizes("1G,0, 64M,256m,64MiB,4K")).toEqual([0, 4096, 64 * MiB, 256 * MiB, 1024 * MiB]);
    expect(() => parseSizes("64X")).toThrow(HarnessError);
    expect(() => parseSizes("")).toThrow(/is not a size/);
  });

  it("writes sizes back in the form --sizes takes (scenario ids, the default's help)", () => {
    const sizes = [0, 4096, 1000, 64 * MiB, 1024 * MiB, 3 * 1024 * MiB];
    expect(sizes.map(sizeArg)).toEqual(["0", "4K", "1000", "64M", "1G", "3G"]);
    expect(parseSizes(sizes.map(sizeArg).join(","))).toEqual([...sizes].sort((a, b) => a - b));
  });

  it("refuses what a shape cannot preserve, in one sentence", () => {
    expect(sizeProblem("memfd", [0, 4096, MiB])).toBeUndefined();
    expect(sizeProblem("memfd", [1000])).toMatch(/units of 4 KiB/);
    expect(sizeProblem("folios-order9", [MiB])).toMatch(/units of 2048 KiB/);
    expect(sizeProblem("mixed", [2 * MiB])).toMatch(/units of 4096 KiB/);
    expect(sizeProblem("folios-order0", [8 * MiB])).toBeUndefined();
    expect(sizeProblem("folios-order0", [16 * MiB])).toMatch(/4096 test-module blocks, more than its 2048/);
  });

  it("sizes the guest for the biggest size", () => {
    expect(guestMemoryMiB([0, 64 * MiB])).toBe(1024);
    expect(guestMemoryMiB([0, 1024 * MiB])).toBe(2048);
    expect(guestMemoryMiB([4096 * MiB])).toBe(768 + 5120);
  });
});

const cost = (sizeBytes: number, phasesMs: Record<string, number>, memory: Record<string, number>): Fact => ({
  kind: "handover-cost",
  shape: "memfd",
  sizeBytes,
  phasesMs,
  memory,
});

describe("samples and figures", () => {
  const where = { arch: "x86_64", kernel: "A", shape: "memfd", repeat: 1 } as const;

  it("LUO's pages are the tree's pages beyond the memfd's own and the size-0 kexec's", () => {
    const samples = samplesOf(
      [
        { kind: "blackout", step: "kexec", totalMs: 1 },
        cost(0, { "mm-init": 10 }, { preservedPages: 2056, radixPages: 40 }),
        cost(64 * MiB, { "mm-init": 40 }, { preservedPages: 18508, radixPages: 45, scratchBytes: 7 }),
      ],
      where,
    );
    expect(samples).toHaveLength(2);
    expect(samples[0]?.memory.luoPages).toBeUndefined();
    expect(samples[1]?.memory).toEqual({
      preservedPages: 18508,
      radixPages: 45,
      luoPages: 68,
      scratchBytes: 7,
    });
    expect(samples[1]?.phasesMs).toEqual({ "mm-init": 40 });
  });

  it("without a size-0 kexec, LUO's pages are not guessed", () => {
    const [s] = samplesOf([cost(64 * MiB, {}, { preservedPages: 18508, radixPages: 45 })], where);
    expect(s?.memory.luoPages).toBeUndefined();
  });

  const sample = (kernel: "A" | "B", repeat: number, sizeBytes: number, mm: number): HandoverSample => ({
    arch: "x86_64",
    kernel,
    shape: "memfd",
    sizeBytes,
    repeat,
    phasesMs: { "mm-init": mm, shutdown: 7 },
    memory: { preservedPages: sizeBytes / 4096, radixPages: 40 },
  });
  // mm-init = 10 + 400 ms/GiB (+ r per repeat)
  const a = [1, 2, 3, 4].flatMap((r) =>
    [0, 256 * MiB, 1024 * MiB].map((s) => sample("A", r, s, 10 + r + (400 * s) / 1024 / MiB)),
  );

  it("per size: the spread over repeats; per phase: the slope", () => {
    const f = figuresOf(a);
    expect(f?.sizes).toEqual([0, 256 * MiB, 1024 * MiB]);
    expect(f?.phases["mm-init"]?.[1]).toEqual({ n: 4, median: 112.5, min: 111, max: 114 });
    expect(f?.phases.readback).toBeUndefined();
    const slope = f?.slopes.find((s) => s.phase === "mm-init");
    expect(slope?.msPerGiB).toBeCloseTo(400, 6);
    expect(slope?.interceptMs).toBeCloseTo(12.5, 6);
    expect(f?.memory[2]?.preservedPages).toBe(262144);
    expect(f?.memory[2]?.luoPages).toBeUndefined();
    expect(figuresOf([])).toBeUndefined();
  });

  it("B against A: slower where B's medians are higher at every size, not elsewhere", () => {
    const b = a.map((s) => ({
      ...s,
      kernel: "B" as const,
      phasesMs: { ...s.phasesMs, "mm-init": (s.phasesMs["mm-init"] ?? 0) * 3 },
    }));
    const c = comparisonOf(a, b);
    const mm = c.phases.find((p) => p.phase === "mm-init");
    expect(mm?.verdict).toBe("slower");
    expect(mm?.ratio).toBeCloseTo(3, 6);
    expect(c.phases.find((p) => p.phase === "shutdown")?.verdict).toBe("no difference");
    expect(comparisonOf(a, a).phases.every((p) => p.verdict === "no difference")).toBe(true);
  });
});
