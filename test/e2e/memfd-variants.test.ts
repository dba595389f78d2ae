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

const FRAMES = /frames identical before and after/;
const DECODED = /decoded KHO map: \d+ chunks, all \d+ memfd frames found/;

/** What each scenario's pass must report (its notes), or how it may skip. */
const EXPECTED: Record<string, { pass: readonly RegExp[]; skip?: RegExp }> = {
  "memfd-empty": { pass: [/1 memfd\(s\) in 1 session\(s\), 0 bytes/, FRAMES] },
  "memfd-one-page": { pass: [/4 KiB/, /1 frames identical/] },
  "memfd-2m": {
    pass: [/2 MiB/, FRAMES, DECODED, /order-9 folio|no THP in boot 1/],
  },
  "memfd-256m": { pass: [/256 MiB/, /65536 frames identical/] },
  "memfd-sparse": { pass: [/8 MiB/, /2048 frames identical/, DECODED] },
  "memfd-shrunk": { pass: [/2 memfd\(s\)/, FRAMES] },
  "memfd-mmap": { pass: [/2 memfd\(s\)/, /8 MiB/, FRAMES] },
  "memfd-sealed": { pass: [/MEMFD_LUO_ALL_SEALS 0x[0-9a-f]+: seals 0x3f \w+/, /identical and enforced/] },
  "memfd-many": {
    pass: [/128 memfd\(s\) in 1 session/, DECODED],
  },
  "memfd-sessions": {
    pass: [/12 memfd\(s\) in 6 session/, DECODED],
  },
  "memfd-unknown-token": { pass: [/unknown session: ENOENT/, /ENOENT \(errno 2\)/] },
  "memfd-finish-then-use": {
    pass: [/PRESERVE_FD EINVAL, RETRIEVE_SESSION EINVAL/, /the memfd stays usable/],
  },
  "memfd-holder-died": { pass: [/RETRIEVE_SESSION ENOENT/, /0 of 1024 frames preserved/] },
  // 7.2 has no LUO handler for hugetlbfs files: a skip that names the errno and the handler
  "hugetlb-memfd": {
    pass: [/MiB of huge pages: same bytes/],
    skip: /refused PRESERVE_FD of a MFD_HUGETLB memfd with [A-Z]+ \(errno \d+\).*(handler|hugetlb)/,
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
      expect(r.reason ?? "", "a skip must say why").toMatch(want.skip);
      return;
    }
    expect(r.verdict, explain(r)).toBe("pass");
    for (const re of want.pass) expect(r.reason ?? "", explain(r)).toMatch(re);
    expect(await readdir(r.artifactsDir ?? "")).not.toContain("memory-before-kexec.elf");
    // On a shared guest too, the scenario's folder leads to the console of both boots.
    expect(await readFile(join(r.artifactsDir ?? "", "boot-2.log"), "utf8")).toMatch(/KHO-GUEST: ready/);
  });
});
