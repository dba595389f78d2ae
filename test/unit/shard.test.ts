import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES } from "../../src/arch.js";
import {
  estimateMs,
  loadDurationsFile,
  parseShard,
  planShards,
  selectionItems,
  shardRecord,
  shardTakes,
  shardUnits,
  shareGroup,
  SHIPPED_DURATIONS,
  type ShardItem,
} from "../../src/orchestrate/shard.js";
import { SCENARIOS } from "../../src/scenarios/index.js";
import { SELFTEST_SCENARIOS } from "../../src/scenarios/selftests.js";

const suite = [...SCENARIOS, ...SELFTEST_SCENARIOS];
const items = (repeat = 1) => selectionItems(ARCH_NAMES, suite, repeat);
const itemKey = (i: ShardItem) => `${i.arch}/${i.scenario.id}/${i.attempt}`;

async function shipped() {
  return loadDurationsFile(SHIPPED_DURATIONS);
}

describe("--shard K/N", () => {
  it("parses K/N and refuses anything else in one sentence", () => {
    expect(parseShard("2/3")).toEqual({ index: 2, count: 3 });
    for (const bad of ["0/2", "3/2", "1/0", "1", "a/b", "1/2/3", "-1/2", "1/999"])
      expect(() => parseShard(bad)).toThrow(/^--shard .*: give K\/N with 1 <= K <= N <= 256/);
  });

  it("every (arch, scenario, attempt) lands in exactly one shard, for 1 to 6 shards", async () => {
    const durations = await shipped();
    for (const repeat of [1, 2])
      for (let n = 1; n <= 6; n++) {
        const all = items(repeat);
        const taken = Array.from({ length: n }, (_, k) =>
          shardUnits(planShards(all, { isolate: false, repeat }, { index: k + 1, count: n }, durations, "f")),
        )
          .flat()
          .flatMap((u) => u.members.map(itemKey));
        expect(taken.sort()).toEqual(all.map(itemKey).sort());
      }
  });

  it("keeps what may share a guest on one shard (a shared guest is one unit)", async () => {
    const plan = planShards(
      items(),
      { isolate: false, repeat: 1 },
      { index: 1, count: 4 },
      await shipped(),
      "f",
    );
    const shardOfGroup = new Map<string, Set<number>>();
    for (const u of plan.units)
      for (const m of u.members)
        if (m.scenario.shareable && !m.scenario.nextKernel) {
          const g = shareGroup(m.arch, m.attempt, m.scenario.boot);
          shardOfGroup.set(g, new Set([...(shardOfGroup.get(g) ?? []), u.shard]));
        }
    expect(shardOfGroup.size).toBeGreaterThan(1);
    for (const shards of shardOfGroup.values()) expect(shards.size).toBe(1);
    // --isolate makes every scenario a unit of its own
    const isolated = planShards(
      items(),
      { isolate: true, repeat: 1 },
      { index: 1, count: 4 },
      new Map(),
      "f",
    );
    expect(isolated.units.every((u) => u.members.length === 1)).toBe(true);
  });

  it("is the same split on every machine: a function of the selection and the durations alone", async () => {
    const durations = await shipped();
    const shuffled = new Map([...durations].reverse());
    const a = planShards(items(), { isolate: false, repeat: 1 }, { index: 2, count: 3 }, durations, "f");
    const b = planShards(items(), { isolate: false, repeat: 1 }, { index: 2, count: 3 }, shuffled, "f");
    expect(shardRecord(b)).toEqual(shardRecord(a));
    // shardTakes answers from the same units
    for (const u of a.units)
      for (const m of u.members) expect(shardTakes(a, m.arch, m.scenario.id, m.attempt)).toBe(u.shard === 2);
  });

  it("balances by the recorded durations (LPT: loads differ by at most the longest unit)", async () => {
    const durations = await shipped();
    for (const n of [2, 3, 4]) {
      const plan = planShards(items(), { isolate: false, repeat: 1 }, { index: 1, count: n }, durations, "f");
      const loads = Array.from({ length: n }, (_, k) =>
        plan.units.filter((u) => u.shard === k + 1).reduce((a, u) => a + u.costMs, 0),
      );
      const longest = Math.max(...plan.units.map((u) => u.costMs));
      expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(longest);
    }
  });

  it("follows the durations file: a unit recorded as very long gets a shard to itself", () => {
    const one = items().filter((i) => i.arch === "x86_64" && !i.scenario.shareable);
    const [victim] = one;
    if (!victim) throw new Error("no unshareable scenario in the suite");
    const durations = new Map([[`x86_64:${victim.scenario.id}`, 10_000_000]]);
    const plan = planShards(one, { isolate: false, repeat: 1 }, { index: 1, count: 2 }, durations, "f");
    const alone = plan.units.find((u) => u.key === `x86_64:${victim.scenario.id}`);
    expect(alone).toBeDefined();
    expect(plan.units.filter((u) => u.shard === alone?.shard)).toHaveLength(1);
  });

  it("estimates a group from its longest recorded sub-unit plus what that does not cover", () => {
    const d = new Map([
      ["x86_64:a+b", 20_000],
      ["x86_64:a", 8_000],
      ["x86_64:c", 3_000],
      ["arm64:a+b+c", 99_000],
      ["x86_64:a+z", 50_000],
    ]);
    expect(estimateMs("x86_64", ["a", "b", "c"], d)).toBe(23_000);
    expect(estimateMs("x86_64", ["a", "c", "d"], d)).toBe(8_000 + 3_000 + 10_000);
  });

  it("a selection's shards share one selection hash; another selection has another", async () => {
    const durations = await shipped();
    const rec = (k: number, sel = items()) =>
      shardRecord(planShards(sel, { isolate: false, repeat: 1 }, { index: k, count: 2 }, durations, "f"));
    expect(rec(1).selection).toBe(rec(2).selection);
    expect(rec(1).allUnits).toEqual(rec(2).allUnits);
    expect(rec(1).units.filter((u) => rec(2).units.includes(u))).toEqual([]);
    expect(rec(1, items().slice(1)).selection).not.toBe(rec(1).selection);
  });

  it("reads a durations file or says in one sentence what is wrong with it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kho-durations-"));
    const file = (name: string, text: string) => writeFile(join(dir, name), text).then(() => join(dir, name));
    expect(await loadDurationsFile(await file("ok.json", '{"x86_64:a": 5}'))).toEqual(
      new Map([["x86_64:a", 5]]),
    );
    await expect(loadDurationsFile(join(dir, "none.json"))).rejects.toThrow(/cannot read it \(ENOENT\)/);
    await expect(loadDurationsFile(await file("bad.json", "{"))).rejects.toThrow(/is not JSON/);
    await expect(loadDurationsFile(await file("arr.json", "[]"))).rejects.toThrow(/expected an object/);
    await expect(loadDurationsFile(await file("neg.json", '{"x86_64:a": -1}'))).rejects.toThrow(
      /"x86_64:a" has -1, expected milliseconds/,
    );
    // the shipped file is valid and knows every default scenario on both arches
    const d = await shipped();
    for (const arch of ARCH_NAMES)
      for (const s of SCENARIOS)
        expect([...d.keys()].some((k) => k.startsWith(`${arch}:`) && k.split(/[:+]/).includes(s.id))).toBe(
          true,
        );
  });
});
