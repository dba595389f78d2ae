// Issue 5, items 3-5: memfd shapes and session lifecycle edges through LUO, a hugetlb memfd and
// a reserve_mem region, on real guests of both arches, through the same runner as `kho run`.
// Each scenario's verdict is asserted with the facts its report must state; a skip must say why.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ARCH_NAMES } from "../../src/arch.js";
import type { ScenarioResult } from "../../src/report/verdict.js";
import { VARIANT_SCENARIOS } from "../../src/scenarios/variants.js";
import { explain, HOUR, runSelected } from "./helpers.js";

const MiB = 1024 * 1024;
type Want = Record<string, unknown>;
/** Any number (an asymmetric matcher). */
const ANY: unknown = expect.any(Number);
/** Every frame of the memfds found in the host's decoding of the map, and the LUO state there. */
const decoded = (frames: unknown): Want[] => [
  { kind: "handover-map", framesFound: frames },
  { kind: "luo-handover", files: ANY },
];
const restored = (memfds: number, sessions: number, bytes: unknown, frames?: unknown): Want => ({
  kind: "memfds-restored",
  memfds,
  sessions,
  bytes,
  ...(frames === undefined ? {} : { frames }),
});

/**
 * The facts each scenario's pass must carry (its typed results; the notes say the same in
 * words), prose only where a scenario states no fact, or how it may skip.
 */
const EXPECTED: Record<string, { facts?: readonly Want[]; pass?: readonly RegExp[]; skip?: Want }> = {
  "memfd-empty": { facts: [restored(1, 1, 0, 0)] },
  "memfd-one-page": { facts: [restored(1, 1, 4096, 1)] },
  "memfd-2m": {
    facts: [restored(1, 1, 2 * MiB, 512), { kind: "folios", orders: { "9": 1 } }, ...decoded(512)],
  },
  "memfd-256m": { facts: [restored(1, 1, 256 * MiB, 65536)] },
  "memfd-sparse": { facts: [restored(1, 1, 8 * MiB, 2048), ...decoded(ANY)] },
  "memfd-shrunk": { facts: [restored(2, 1, ANY)] },
  "memfd-mmap": { facts: [restored(2, 1, 8 * MiB)] },
  "memfd-sealed": { pass: [/MEMFD_LUO_ALL_SEALS 0x[0-9a-f]+: seals 0x3f \w+/, /identical and enforced/] },
  "memfd-many": {
    facts: [restored(128, 1, ANY), ...decoded(ANY)],
  },
  "memfd-sessions": {
    facts: [restored(12, 6, ANY), ...decoded(ANY)],
  },
  "memfd-unknown-token": {
    facts: [{ kind: "errno", errname: "ENOENT" }],
    pass: [/unknown session: ENOENT/],
  },
  "memfd-finish-then-use": {
    facts: [
      { kind: "errno", operation: "PRESERVE_FD after FINISH", errname: "EINVAL" },
      { kind: "errno", operation: "RETRIEVE_SESSION after FINISH", errname: "EINVAL" },
      { kind: "errno", operation: "retrieve_session", errname: "ENOENT" },
    ],
    pass: [/PRESERVE_FD EINVAL, RETRIEVE_SESSION EINVAL/, /the memfd stays usable/],
  },
  "memfd-holder-died": {
    facts: [{ kind: "errno", operation: "retrieve_session", errname: "ENOENT" }],
    pass: [/0 of 1024 frames preserved/],
  },
  // 7.2 has no LUO handler for hugetlbfs files: the one refusal that may skip is ENOENT
  "hugetlb-memfd": {
    facts: [restored(1, 1, ANY)],
    skip: { kind: "errno", operation: "PRESERVE_FD", errname: "ENOENT" },
  },
  "reserve-mem": { pass: [/revived at 0x[0-9a-f]+/, /markers readable in boot 2/, /memblock subtree/] },
};

describe.each(ARCH_NAMES)("memfd variants, hugetlb and reserve_mem on %s", (arch) => {
  const results = new Map<string, ScenarioResult>();

  beforeAll(async () => {
    for (const r of await runSelected(arch, VARIANT_SCENARIOS.map((s) => s.id).join(",")))
      results.set(r.id, r);
  }, 4 * HOUR);

  it("covers every scenario of the set", () => {
    expect([...results.keys()].sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(Object.entries(EXPECTED))("%s", async (id, want) => {
    const r = results.get(id);
    if (!r) throw new Error(`${id} did not run`);
    if (r.verdict === "skip" && want.skip) {
      expect(r.facts, "a skip must state the refusal it skips on").toEqual(
        expect.arrayContaining([expect.objectContaining(want.skip)]),
      );
      return;
    }
    expect(r.verdict, explain(r)).toBe("pass");
    for (const f of want.facts ?? []) {
      expect(r.facts, explain(r)).toEqual(expect.arrayContaining([expect.objectContaining(f)]));
    }
    for (const re of want.pass ?? []) expect(r.reason ?? "", explain(r)).toMatch(re);
    // no planned check was left undone
    expect(r.checks?.filter((c) => c.status !== "passed") ?? [], explain(r)).toEqual([]);
    expect(await readdir(r.artifactsDir ?? "")).not.toContain("memory-before-kexec.elf");
    // On a shared guest too, the scenario's folder leads to the console of both boots.
    expect(await readFile(join(r.artifactsDir ?? "", "boot-2.log"), "utf8")).toMatch(/KHO-GUEST: ready/);
  });
});
