import { describe, expect, it } from "vitest";
import { cpus, totalmem } from "node:os";
import { defaultGuestJobs } from "../../src/orchestrate/runner.js";
import { runPool } from "../../src/util/pool.js";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("runPool", () => {
  it("never runs more than the limit at once and runs every item", async () => {
    let inFlight = 0;
    let peak = 0;
    const done: number[] = [];
    await runPool([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await tick(5 + (n % 3) * 3);
      done.push(n);
      inFlight--;
    });
    expect(peak).toBe(3);
    expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it("stops starting tasks after a failure and rethrows it once the running ones settle", async () => {
    const started: number[] = [];
    let settled = 0;
    const run = runPool([1, 2, 3, 4, 5], 2, async (n) => {
      started.push(n);
      await tick(n === 1 ? 1 : 20);
      settled++;
      if (n === 1) throw new Error("boom");
    });
    await expect(run).rejects.toThrow("boom");
    expect(started).toEqual([1, 2]);
    expect(settled).toBe(2);
  });
});

describe("defaultGuestJobs", () => {
  it("is one guest per core, as far as 7 GiB of RAM a guest allows, and at least one", () => {
    const jobs = defaultGuestJobs();
    expect(jobs).toBeGreaterThanOrEqual(1);
    expect(jobs).toBeLessThanOrEqual(Math.max(1, cpus().length));
    expect(jobs).toBeLessThanOrEqual(Math.max(1, Math.floor(totalmem() / 2 ** 30 / 7)));
  });
});
