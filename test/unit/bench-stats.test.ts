import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { guestMarks } from "../../src/bench/console-marks.js";
import { selftestInitrd } from "../../src/bench/selftest-init.js";
import {
  overhead,
  percentile,
  phasesBetween,
  ratio,
  summarize,
  summarizePhases,
} from "../../src/bench/stats.js";
import { cpioKind, readCpio } from "../../src/image/cpio.js";

describe("percentile (linear between closest ranks)", () => {
  it("matches numpy's default on small samples", () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([4, 1, 3, 2], 50)).toBe(2.5);
    expect(percentile([10, 20, 30], 95)).toBeCloseTo(29);
    expect(percentile([10, 20, 30], 0)).toBe(10);
    expect(percentile([10, 20, 30], 100)).toBe(30);
    expect(percentile([7], 95)).toBe(7);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBeCloseTo(9.55);
  });

  it("is NaN without samples and refuses bad input", () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], -1)).toThrow(RangeError);
    expect(() => percentile([1, Number.NaN], 50)).toThrow(RangeError);
  });

  it("lies between min and max, grows with p, and ignores the input order", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 1e6 }), { minLength: 1, maxLength: 50 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 100 }),
        (xs, p, q) => {
          const [lo, hi] = p <= q ? [p, q] : [q, p];
          const a = percentile(xs, lo);
          const b = percentile(xs, hi);
          expect(a).toBeGreaterThanOrEqual(Math.min(...xs));
          expect(b).toBeLessThanOrEqual(Math.max(...xs));
          expect(a).toBeLessThanOrEqual(b + 1e-9);
          expect(percentile([...xs].reverse(), lo)).toBeCloseTo(a);
        },
      ),
    );
  });

  it("does not reorder the caller's array", () => {
    const xs = [3, 1, 2];
    percentile(xs, 50);
    expect(xs).toEqual([3, 1, 2]);
  });
});

describe("summaries", () => {
  it("summarize gives n, min, p50, p95, max, mean", () => {
    expect(summarize([2, 4, 6])).toEqual({ n: 3, min: 2, p50: 4, p95: 5.8, max: 6, mean: 4 });
    const empty = summarize([]);
    expect(empty.n).toBe(0);
    expect(empty.p50).toBeNaN();
  });

  it("summarizePhases keeps first-seen order and skips a phase a sample lacks", () => {
    const s = summarizePhases([
      { boot: 10, kexec: 20 },
      { boot: 30, dump: 5, kexec: 40 },
    ]);
    expect(Object.keys(s)).toEqual(["boot", "kexec", "dump"]);
    expect(s.boot?.p50).toBe(20);
    expect(s.dump).toMatchObject({ n: 1, p50: 5 });
  });
});

describe("overhead ratios", () => {
  it("ratio is NaN rather than Infinity", () => {
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(1, 0)).toBeNaN();
    expect(ratio(Number.NaN, 1)).toBeNaN();
  });

  it("compares percentiles, and pairs repeats when given", () => {
    const o = overhead(
      [30, 20, 40],
      [10, 20, 10],
      [
        [30, 10],
        [20, 20],
        [40, 10],
      ],
    );
    expect(o.p50).toBe(3);
    expect(o.p95).toBeCloseTo(39 / 19);
    expect(o.pairedP50).toBe(3);
    expect(overhead([1], []).p50).toBeNaN();
    expect(overhead([1], [1]).pairedP50).toBeNaN();
  });
});

describe("phasesBetween", () => {
  it("gives each mark the time to the next one", () => {
    expect(
      phasesBetween([
        ["build", 100],
        ["boot", 150.4],
        ["kexec", 1000],
        ["end", 1500],
      ]),
    ).toEqual({ build: 50, boot: 850, kexec: 500 });
    expect(phasesBetween([["only", 5]])).toEqual({});
  });
});

describe("guest console marks", () => {
  it("reads printk times per boot, first match only, skipping untimed lines", () => {
    const marks = guestMarks([
      "Booting...",
      "[    0.000000] Linux version 7.2.13 (root@vm) #1",
      "[    1.046052] Freeing initrd memory: 8996K",
      "[    1.945393] Run /init as init process",
      "Run /init as init process",
      "/ # \u001b[6n[    4.212116] kexec_core: Starting new kernel",
      "[    0.000000] Linux version 7.2.13 (root@vm) #1",
      "[    2.433679] test_kho: KHO restore succeeded",
      "[    2.500000] test_kho: KHO restore succeeded",
    ]);
    expect(marks).toEqual({
      "boot1 initramfs unpacked": 1046,
      "boot1 run init": 1945,
      "boot1 kexec start": 4212,
      "boot2 kho restore": 2434,
    });
  });
});

describe("the selftest's initrd (vmtest.sh's cpio_list)", () => {
  it("holds /dev, /proc, /debugfs, /dev/console, /init and /kernel", () => {
    const records = readCpio(selftestInitrd(new Uint8Array([1, 2]), new Uint8Array([3])));
    expect(records.map((r) => [r.name, cpioKind(r.mode), (r.mode & 0o7777).toString(8)])).toEqual([
      ["dev", "dir", "755"],
      ["proc", "dir", "755"],
      ["debugfs", "dir", "755"],
      ["dev/console", "char", "600"],
      ["init", "file", "755"],
      ["kernel", "file", "644"],
    ]);
    const console = records.find((r) => r.name === "dev/console");
    expect([console?.rdevMajor, console?.rdevMinor]).toEqual([5, 1]);
    expect([...(records.find((r) => r.name === "kernel")?.data ?? [])]).toEqual([3]);
  });
});
