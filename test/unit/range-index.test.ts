// RangeIndex answers as a scan of every range would, on random sets with overlaps and holes.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RangeIndex, type PhysRange } from "../../src/kho/range-index.js";

const overlaps = (r: PhysRange, start: bigint, end: bigint) => r.start < end && start < r.end;

describe("RangeIndex", () => {
  it("finds an overlapping range exactly when a scan does", () => {
    const range = fc
      .tuple(fc.nat({ max: 5000 }), fc.integer({ min: 1, max: 300 }))
      .map(([s, len]) => ({ start: BigInt(s), end: BigInt(s + len) }));
    fc.assert(
      fc.property(
        fc.array(range, { maxLength: 60 }),
        fc.array(range, { maxLength: 40 }),
        (ranges, queries) => {
          const index = new RangeIndex(ranges);
          for (const q of queries) {
            const found = index.find(q.start, q.end);
            expect(found !== undefined).toBe(ranges.some((r) => overlaps(r, q.start, q.end)));
            if (found) expect(overlaps(found, q.start, q.end)).toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it("looks past a long range's neighbours to the long range itself", () => {
    const long = { start: 0n, end: 1000n, name: "long" };
    const index = new RangeIndex([
      long,
      { start: 10n, end: 20n, name: "a" },
      { start: 30n, end: 40n, name: "b" },
    ]);
    expect(index.find(500n, 501n)?.name).toBe("long");
    expect(index.find(35n, 36n)?.name).toBe("b");
    expect(index.find(1000n, 2000n)).toBeUndefined();
    expect(new RangeIndex([]).find(0n, 1n)).toBeUndefined();
  });

  it("answers 70k chunks against 2k claimed pages in well under a second", () => {
    const chunks = Array.from({ length: 70_000 }, (_, i) => ({
      start: BigInt(i * 8192),
      end: BigInt(i * 8192 + 4096),
    }));
    const index = new RangeIndex(chunks);
    const t = performance.now();
    let hits = 0;
    for (let p = 0; p < 2048 * 16; p += 16) if (index.find(BigInt(p * 4096), BigInt(p * 4096 + 1))) hits++;
    expect(hits).toBe(2048);
    expect(performance.now() - t).toBeLessThan(1000);
  });
});
