import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import type { BootTiming } from "../../src/session/boot-timeline.js";
import type { Guest } from "../../src/session/guest.js";
import { planUnits, scheduleUnits } from "../../src/orchestrate/runner.js";
import { sharedBoot, type PreparedArch } from "../../src/orchestrate/scenario-run.js";
import { takeTurns } from "../../src/session/shared.js";
import {
  loadUnitDurations,
  longestFirst,
  saveUnitDurations,
  unitKey,
} from "../../src/orchestrate/unit-durations.js";
import type { Scenario } from "../../src/api/scenario.js";
import { DEFAULT_MEMORY_MIB } from "../../src/vm/qemu.js";

const TIMING: BootTiming = { boot: 2, via: "kexec", totalMs: 4000, segments: [] };

/** A guest whose kexec records which trigger ran and takes `ms`. */
function fakeGuest(ms = 20, fail?: Error) {
  const fired: string[] = [];
  const guest = {
    boot: 1,
    kexec: async (trigger: () => Promise<void>, step?: string) => {
      await trigger();
      fired.push(step ?? "?");
      await sleep(ms);
      if (fail) throw fail;
      return TIMING;
    },
  } as unknown as Guest;
  return { guest, fired };
}

/** Runs members through takeTurns, the loop runShared runs its members in. */
async function runMembers(
  guest: Guest,
  plans: readonly { name: string; before: number; kexec: boolean }[],
  load?: (log: string[]) => Promise<void>,
): Promise<{ log: string[]; waited: Map<string, number>; outcomes: (BootTiming | Error | undefined)[] }> {
  const log: string[] = [];
  const waited = new Map<string, number>();
  const outcomes = await takeTurns(
    guest,
    plans.length,
    load ? () => load(log) : () => Promise.resolve(),
    async (index, member) => {
      const p = plans[index];
      if (!p) throw new Error(`no plan ${index}`);
      const view = member((ms) => waited.set(p.name, (waited.get(p.name) ?? 0) + ms));
      try {
        log.push(`${p.name} start`);
        await sleep(p.before);
        log.push(`${p.name} end of boot 1`);
        if (!p.kexec) return undefined;
        expect(view.kexecLoadsNextKernel).toBe(true);
        const trigger = () => {
          log.push(`trigger by ${p.name}`);
          return Promise.resolve();
        };
        const t = await view.kexec(trigger, `kexec by ${p.name}`);
        log.push(`${p.name} in boot 2`);
        return t;
      } catch (err) {
        return err as Error;
      }
    },
  );
  return { log, waited, outcomes };
}

describe("a guest shared by several scenarios", () => {
  it("members take turns, one kexec for all with the last arrival's trigger, then turns again", async () => {
    const { guest, fired } = fakeGuest();
    const { log, waited, outcomes } = await runMembers(guest, [
      { name: "a", before: 30, kexec: true },
      { name: "b", before: 10, kexec: false },
      { name: "c", before: 10, kexec: true },
    ]);
    expect(fired).toEqual(["kexec by c"]);
    expect(outcomes).toEqual([TIMING, undefined, TIMING]);
    // Nobody's boot-1 step overlaps another's; boot 2 starts after every boot 1 ended.
    expect(log).toEqual([
      "a start",
      "a end of boot 1",
      "b start",
      "b end of boot 1",
      "c start",
      "c end of boot 1",
      "trigger by c",
      "a in boot 2",
      "c in boot 2",
    ]);
    // a waited for b and c (~20 ms at least), not for the kexec itself.
    expect(waited.get("a") ?? 0).toBeGreaterThanOrEqual(15);
    expect(waited.get("c") ?? 0).toBeLessThan(15);
  });

  it("loads the next kernel once, after every member arrived, right before the trigger", async () => {
    const { guest, fired } = fakeGuest();
    const { log } = await runMembers(
      guest,
      [
        { name: "a", before: 5, kexec: true },
        { name: "b", before: 5, kexec: true },
      ],
      async (log) => {
        await sleep(5);
        log.push("load");
      },
    );
    expect(fired).toEqual(["kexec by b"]);
    expect(log.filter((l) => /load|trigger/.test(l))).toEqual(["load", "trigger by b"]);
    expect(log.indexOf("load")).toBeGreaterThan(log.indexOf("b end of boot 1"));
  });

  it("a failed load fails every member, and nothing kexecs", async () => {
    const { guest, fired } = fakeGuest();
    const { outcomes } = await runMembers(
      guest,
      [
        { name: "a", before: 1, kexec: true },
        { name: "b", before: 1, kexec: true },
      ],
      () => Promise.reject(new Error("kexec_file_load: ENOMEM")),
    );
    expect(fired).toEqual([]);
    expect(outcomes.map((o) => (o instanceof Error ? o.message : o))).toEqual([
      "kexec_file_load: ENOMEM",
      "kexec_file_load: ENOMEM",
    ]);
  });

  it("a failed kexec fails every member waiting on it", async () => {
    const { guest } = fakeGuest(5, new Error("kexec went silent"));
    const { outcomes } = await runMembers(guest, [
      { name: "a", before: 1, kexec: true },
      { name: "b", before: 1, kexec: true },
    ]);
    expect(outcomes.map((o) => (o instanceof Error ? o.message : o))).toEqual([
      "kexec went silent",
      "kexec went silent",
    ]);
  });
});

describe("which scenarios share a guest", () => {
  const prepared = (arch: string) =>
    ({
      summary: { arch, kernel: { config: new Map([["KEXEC_HANDOVER", "y"]]) } },
      features: new Set(),
    }) as unknown as PreparedArch;
  const scenario = (
    id: string,
    shareable: boolean,
    memoryMiB?: number,
    kho = true,
    append?: string,
  ): Scenario => ({
    id,
    description: id,
    needs: ["kho"],
    boot: { kho, ...(memoryMiB ? { memoryMiB } : {}), ...(append ? { append } : {}) },
    shareable,
    run: () => Promise.resolve(),
  });
  const x86 = prepared("x86_64");
  const arm = prepared("arm64");
  const work = [
    { scenario: scenario("a", true), prepared: x86, attempt: 0, order: 0 },
    { scenario: scenario("b", false), prepared: x86, attempt: 0, order: 1 },
    { scenario: scenario("c", true, undefined, true, "hugepages=16"), prepared: x86, attempt: 0, order: 2 },
    { scenario: scenario("big", true, 1536), prepared: x86, attempt: 0, order: 3 },
    { scenario: scenario("off", true, undefined, false), prepared: x86, attempt: 0, order: 4 },
    { scenario: scenario("huge", true, 8192), prepared: x86, attempt: 0, order: 4.5 },
    { scenario: scenario("a", true), prepared: arm, attempt: 0, order: 5 },
    { scenario: scenario("c", true), prepared: arm, attempt: 0, order: 6 },
  ].map((w) => ({ ...w, key: unitKey(w.prepared.summary.arch, [w.scenario.id]) }));
  const describeUnit = (u: ReturnType<typeof planUnits>[number]) =>
    u.kind === "one"
      ? `${u.scenario.id}.${u.prepared.summary.arch}`
      : `${u.label}.${u.prepared.summary.arch}: ${u.members.map((m) => m.id).join(",")}`;

  it("one guest per arch and KHO setting (appends add up, memory up to 6 GiB) for the shareable ones, first; the rest one each, in order", () => {
    expect(planUnits(work, false).map(describeUnit)).toEqual([
      "shared-guest-1.x86_64: a,c,big",
      "shared-guest-1.arm64: a,c",
      "b.x86_64",
      "off.x86_64",
      "huge.x86_64",
    ]);
  });

  it("a shared guest gets the most memory any member asks for, and every member's parameters once", () => {
    expect(sharedBoot([scenario("a", true), scenario("big", true, 1536)])).toEqual({
      kho: true,
      memoryMiB: 1536,
    });
    expect(sharedBoot([scenario("a", true), scenario("c", true)]).memoryMiB).toBe(DEFAULT_MEMORY_MIB);
    const boot = sharedBoot([
      scenario("h", true, undefined, true, "hugepages=16"),
      scenario("a", true),
      scenario("r", true, undefined, true, "reserve_mem=2M:4096:rm  trace_instance=rm@rm"),
      scenario("h2", true, undefined, true, "hugepages=16"),
    ]);
    expect(boot).toEqual({
      kho: true,
      memoryMiB: DEFAULT_MEMORY_MIB,
      append: "hugepages=16 reserve_mem=2M:4096:rm trace_instance=rm@rm",
    });
  });

  it("NUMA guests are shared only at one node count; a scenario with a kernel variant runs alone, last", () => {
    const numa = (id: string, numaNodes: number): Scenario => ({
      ...scenario(id, true),
      boot: { kho: true, numaNodes },
    });
    const variant: Scenario = { ...scenario("v", true), nextKernel: "max-order-9" };
    const more = [numa("n1", 2), numa("n2", 2), numa("n4", 4), variant, scenario("z", false)].map((s, i) => ({
      scenario: s,
      prepared: x86,
      attempt: 0,
      order: 20 + i,
      key: unitKey("x86_64", [s.id]),
    }));
    const units = scheduleUnits([...work, ...more], false, new Map());
    expect(units.map(describeUnit)).toContain("shared-guest-2.x86_64: n1,n2");
    expect(units.map(describeUnit)).toContain("n4.x86_64");
    expect(units.map(describeUnit).at(-1)).toBe("v.x86_64");
    expect(units.filter((u) => u.kind === "shared").flatMap((u) => u.members.map((m) => m.id))).not.toContain(
      "v",
    );
    expect(sharedBoot([numa("n1", 2), numa("n2", 2)])).toMatchObject({ numaNodes: 2 });
  });

  it("--isolate: one guest each", () => {
    expect(planUnits(work, true).map(describeUnit)).toEqual([
      "a.x86_64",
      "b.x86_64",
      "c.x86_64",
      "big.x86_64",
      "off.x86_64",
      "huge.x86_64",
      "a.arm64",
      "c.arm64",
    ]);
  });

  it("longest first by the remembered wall times, never across attempts; untimed: shared first, others as 10 s", () => {
    const units = planUnits(
      [...work, ...work.map((w) => ({ ...w, attempt: 1, order: w.order + 10 }))],
      false,
    );
    const durations = new Map([
      [unitKey("x86_64", ["b"]), 30_000],
      [unitKey("x86_64", ["off"]), 5_000],
      [unitKey("arm64", ["c", "a"]), 40_000],
    ]);
    expect(longestFirst(units, durations).map((u) => `${describeUnit(u)}#${u.attempt}`)).toEqual([
      "shared-guest-1.x86_64: a,c,big#0",
      "shared-guest-1.arm64: a,c#0",
      "b.x86_64#0",
      "huge.x86_64#0",
      "off.x86_64#0",
      "shared-guest-2.x86_64: a,c,big#1",
      "shared-guest-2.arm64: a,c#1",
      "b.x86_64#1",
      "huge.x86_64#1",
      "off.x86_64#1",
    ]);
    // Once timed too, the x86_64 shared guest (12 s) goes after b (30 s).
    const timed = new Map([...durations, [unitKey("x86_64", ["a", "c", "big"]), 12_000]]);
    const first = units.filter((u) => u.attempt === 0);
    expect(longestFirst(first, timed).map(describeUnit)).toEqual([
      "shared-guest-1.arm64: a,c",
      "b.x86_64",
      "shared-guest-1.x86_64: a,c,big",
      "huge.x86_64",
      "off.x86_64",
    ]);
  });

  it("remembers unit durations in the cache, merged over earlier runs, and survives a torn file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kho-durations-"));
    const old = process.env.KHO_CACHE_DIR;
    process.env.KHO_CACHE_DIR = dir;
    try {
      expect((await loadUnitDurations()).size).toBe(0);
      await saveUnitDurations(new Map([["x86_64:a", 1000]]));
      await saveUnitDurations(new Map([["arm64:a", 2000]]));
      expect([...(await loadUnitDurations())]).toEqual([
        ["x86_64:a", 1000],
        ["arm64:a", 2000],
      ]);
      await writeFile(join(dir, "unit-durations.json"), '{"x86_64:a": 10');
      expect((await loadUnitDurations()).size).toBe(0);
    } finally {
      if (old === undefined) delete process.env.KHO_CACHE_DIR;
      else process.env.KHO_CACHE_DIR = old;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
