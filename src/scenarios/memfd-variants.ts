// memfd shapes through LUO, one scenario each: empty, one page, 2 MiB (a THP folio when the
// guest gives one), 256 MiB, sparse, shrunk, mmap- vs write-filled, sealed, many memfds in one
// session, several sessions. Every one checks contents against the host's own model, size,
// position, seals, frames and folio sizes before and after the kexec (memfd-common.ts).
import { randomInt } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ScenarioContext } from "../api/context.js";
import { CheckFailed } from "../api/outcome.js";
import {
  checkPreserved,
  checkRestored,
  holdSessions,
  kexecHeldNoted,
  memfdScenario,
  restoreSessions,
} from "./memfd-common.js";
import { MiB, seeded, sessionArgs, type MemfdSpec } from "../agent/memfd-args.js";
import { findMemfd } from "../checks/memfd.js";
import type { Scenario } from "../api/scenario.js";

const KiB = 1024;

const empty = memfdScenario({
  id: "memfd-empty",
  description: "an empty memfd (size 0, no folios) with its file position at 12345 survives kexec",
  sessions: [{ name: "kho-memfd-empty", memfds: [{ token: 1, size: 0, pos: 12345 }] }],
  verify(ctx, before, after) {
    const m = findMemfd(after, "kho-memfd-empty", 1);
    ctx.check(m?.size === 0 && m.pages === 0, `the empty memfd came back with ${m?.size} bytes`);
    ctx.check(before.sessions[0]?.memfds[0]?.pos === 12345, "the agent did not set the position to 12345");
  },
});

const onePage = memfdScenario({
  id: "memfd-one-page",
  description: "a memfd of exactly one page survives kexec on the same frame",
  sessions: [{ name: "kho-memfd-one-page", memfds: [{ token: 1, size: 4 * KiB }] }],
  verify(ctx, before) {
    const m = findMemfd(before, "kho-memfd-one-page", 1);
    ctx.check(m?.pages === 1 && m.pages_present === 1, `one page expected, the agent saw ${m?.pages}`);
  },
});

const SHMEM_THP = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
const twoMiB = memfdScenario({
  id: "memfd-2m",
  description:
    "a 2 MiB memfd filled through a PMD-aligned MADV_HUGEPAGE mapping, one order-9 THP folio (the case it exists for; none is a failure): same bytes, frames and folio order, all in the decoded KHO map",
  sessions: [{ name: "kho-memfd-2m", memfds: [{ token: 1, size: 2 * MiB, fill: "mmap", thp: true }] }],
  decodeMap: true,
  async prepare(ctx) {
    // shmem THP is off by default; "advise" lets the agent's MADV_HUGEPAGE mapping get one
    const set = await ctx.guest.exec(`echo advise > ${SHMEM_THP}`);
    ctx.check(set.code === 0, `shmem THP could not be set to advise (${SHMEM_THP})`, [set.stderr.trim()]);
  },
  afterPreserve(ctx, before) {
    // the point of the scenario is the THP case: a guest that gave order-0 pages has not tested
    // it, which fails in boot 1, saying what it gave (checkRestored compares the orders after)
    const pre = findMemfd(before, "kho-memfd-2m", 1);
    const orders = pre?.kpageflags?.folio_orders ?? {};
    ctx.check(
      orders["9"] === 1,
      `the guest gave the 2 MiB memfd no order-9 folio (folio orders ${JSON.stringify(orders)}): the THP case was not tested`,
      [`kpageflags ${JSON.stringify(pre?.kpageflags ?? null)}`],
    );
    ctx.note("the memfd was one order-9 folio and came back as one", {
      kind: "folios",
      memfd: "kho-memfd-2m/1",
      orders,
    });
  },
});

const big = memfdScenario({
  id: "memfd-256m",
  description:
    "a 256 MiB memfd in a 1.5 GiB guest survives kexec: the same bytes (its frames in guest memory against the host's model before, every byte read back against the model after) on the same 65536 frames",
  sessions: [{ name: "kho-memfd-256m", memfds: [{ token: 1, size: 256 * MiB }] }],
  boot: { kho: true, memoryMiB: 1536 },
  deadlineMs: 900_000,
});

const sparse = memfdScenario({
  id: "memfd-sparse",
  description:
    "an 8 MiB memfd with only every 16th page written (holes elsewhere): holes read as zeros after kexec, every frame in the decoded KHO map",
  sessions: [{ name: "kho-memfd-sparse", memfds: [{ token: 1, size: 8 * MiB, sparse: 16 }] }],
  decodeMap: true,
});

const shrunk = memfdScenario({
  id: "memfd-shrunk",
  description:
    "memfds resized before preservation (4 MiB cut to 1 MiB + 1000 bytes; 2 MiB cut to 512 KiB and grown back): exact sizes, zero tails and frames after kexec",
  sessions: [
    {
      name: "kho-memfd-shrunk",
      memfds: [
        { token: 1, size: MiB + 1000, truncate: 4 * MiB },
        { token: 2, size: 2 * MiB, truncate: 512 * KiB },
      ],
    },
  ],
});

// Both memfds of memfd-mmap get the same bytes, one through a mapping, one through write().
const MMAP_SEED = BigInt(randomInt(1, 2 ** 47));
const mmapVsWrite = memfdScenario({
  id: "memfd-mmap",
  description:
    "the same 4 MiB written through a shared mapping (position 0) and through write() (position at the end): both come back identical, with their positions",
  sessions: [
    {
      name: "kho-memfd-mmap",
      memfds: [
        { token: 1, size: 4 * MiB, fill: "mmap", seed: MMAP_SEED },
        { token: 2, size: 4 * MiB, fill: "write", seed: MMAP_SEED },
      ],
    },
  ],
  verify(ctx, _before, after) {
    const [m, w] = [findMemfd(after, "kho-memfd-mmap", 1), findMemfd(after, "kho-memfd-mmap", 2)];
    // both read back as the one model of their shared seed (or, hashed, with one SHA-256)
    const same =
      m?.sha256 != null ? m.sha256 === w?.sha256 : m?.expected?.match === true && w?.expected?.match === true;
    ctx.check(same && m?.size === w?.size, "the mmap- and write-filled memfds differ after kexec", [
      `mmap  ${JSON.stringify(m?.expected ?? m?.sha256 ?? null)}`,
      `write ${JSON.stringify(w?.expected ?? w?.sha256 ?? null)}`,
    ]);
    ctx.check(m?.pos === 0 && w?.pos === 4 * MiB, `positions ${m?.pos} and ${w?.pos}, wanted 0 and 4 MiB`);
  },
});

const MANY = 128;
const many = memfdScenario({
  id: "memfd-many",
  description: `${MANY} memfds of 4-64 KiB (some not page-multiples, mmap and write fills) in one session, retrieved in reverse order, every frame in the decoded KHO map`,
  sessions: [
    {
      name: "kho-memfd-many",
      memfds: Array.from({ length: MANY }, (_, i): MemfdSpec => ({
        token: 1000 + i,
        size: ((i % 16) + 1) * 4 * KiB - (i % 3) * 100,
        fill: i % 2 ? "mmap" : "write",
      })),
    },
  ],
  reverseRestore: true,
  decodeMap: true,
});

const SESSIONS = 6;
const sessions = memfdScenario({
  id: "memfd-sessions",
  description: `${SESSIONS} sessions, each with tokens 1 and 2 (same tokens, other contents), retrieved in reverse order: every session gets its own files back`,
  sessions: Array.from({ length: SESSIONS }, (_, i) => ({
    name: `kho-memfd-session-${i}`,
    memfds: [
      { token: 1, size: 256 * KiB },
      { token: 2, size: MiB, fill: "mmap" as const },
    ],
  })),
  reverseRestore: true,
  decodeMap: true,
});

// ------------------------------------------------------------------------------------------------
// Seals: mm/memfd_luo.c preserves a memfd only if all its seals are in MEMFD_LUO_ALL_SEALS
// (include/linux/kho/abi/memfd.h), else PRESERVE_FD fails with EOPNOTSUPP; on retrieve it
// re-applies the seals to the new file. The scenario reads that set from the kernel's source
// and expects exactly that outcome per memfd, then probes that the seals still bite.

const SEAL_BITS: Readonly<Record<string, number>> = {
  F_SEAL_SEAL: 0x1,
  F_SEAL_SHRINK: 0x2,
  F_SEAL_GROW: 0x4,
  F_SEAL_WRITE: 0x8,
  F_SEAL_FUTURE_WRITE: 0x10,
  F_SEAL_EXEC: 0x20,
};
const ALL_SEALS = Object.values(SEAL_BITS).reduce((a, b) => a | b, 0);

/** MEMFD_LUO_ALL_SEALS of the kernel under test, from its source tree. */
async function preservableSeals(ctx: ScenarioContext): Promise<number> {
  const tree = ctx.kernel.built?.manifest.sourceTree;
  const header = tree
    ? await readFile(join(tree, "include/linux/kho/abi/memfd.h"), "utf8").catch(() => "")
    : "";
  const def = /#define\s+MEMFD_LUO_ALL_SEALS\s*\(([^)]*)\)/.exec(header);
  if (!def?.[1]) {
    ctx.note("MEMFD_LUO_ALL_SEALS not found in the kernel source: assuming every seal is preservable");
    return ALL_SEALS;
  }
  return (def[1].match(/F_SEAL_\w+/g) ?? []).reduce((mask, name) => mask | (SEAL_BITS[name] ?? 0), 0);
}

/** What the agent's probe-freeze must see on a memfd with these seals (it is not frozen any more). */
function sealProbe(seals: number): Record<string, string> {
  const has = (name: string) => (seals & (SEAL_BITS[name] ?? 0)) !== 0;
  const writeSealed = has("F_SEAL_WRITE") || has("F_SEAL_FUTURE_WRITE");
  const verdict = (denied: boolean) => (denied ? "EPERM" : "ok");
  return {
    ftruncate_grow: verdict(has("F_SEAL_GROW")),
    ftruncate_shrink: verdict(has("F_SEAL_SHRINK")),
    write_past_eof: verdict(has("F_SEAL_GROW") || writeSealed),
    fallocate_past_eof: verdict(has("F_SEAL_GROW")),
    write_inside: verdict(writeSealed),
  };
}

const SEALED = "kho-memfd-sealed";
const sealed: Scenario = {
  id: "memfd-sealed",
  description:
    "memfds with all six seals, with shrink+grow, and unsealable: preserved or refused (EOPNOTSUPP) exactly as memfd_luo decides from MEMFD_LUO_ALL_SEALS; restored seals still refuse resizes and writes",
  needs: ["kho", "luo", "luo-memfd"],
  boot: { kho: true },
  shareable: true,
  async run(ctx) {
    const supported = await preservableSeals(ctx);
    const [spec] = seeded([
      {
        name: SEALED,
        memfds: [
          { token: 1, size: MiB, seals: "seal+shrink+grow+write+future_write+exec", try: true },
          { token: 2, size: MiB, seals: "shrink+grow", try: true },
          { token: 3, size: MiB, try: true }, // no MFD_ALLOW_SEALING: F_SEAL_SEAL only
        ],
      },
    ]);
    if (!spec) return;
    const held = await ctx.phase("preserve", () =>
      holdSessions(ctx, `preserve ${sessionArgs([spec])}`, "agent-preserve.json"),
    );
    const outcomes: string[] = [];
    const kept = spec.memfds.filter((m) => {
      const pre = findMemfd(held.result, SEALED, m.token);
      if (!pre) throw new CheckFailed(`the agent reported no memfd ${m.token}`);
      const refusable = (pre.seals & ~supported) !== 0;
      const refusal = pre.preserve_error?.errname;
      ctx.check(
        refusable ? refusal === "EOPNOTSUPP" : pre.preserved === true,
        `memfd ${m.token} with seals 0x${pre.seals.toString(16)}: ${refusable ? `the kernel should refuse it with EOPNOTSUPP (MEMFD_LUO_ALL_SEALS is 0x${supported.toString(16)})` : "the kernel should preserve it"}, but PRESERVE_FD gave ${refusal ?? "ok"}`,
        [JSON.stringify(pre.preserve_error ?? {})],
      );
      outcomes.push(`seals 0x${pre.seals.toString(16)} ${refusable ? "refused (EOPNOTSUPP)" : "preserved"}`);
      return !refusable;
    });
    const session = { name: SEALED, memfds: kept };
    await checkPreserved(ctx, [session], held.result);
    await kexecHeldNoted(ctx, held.stream);
    const after = await restoreSessions(ctx, [
      { name: SEALED, memfds: kept.map((m) => ({ ...m, try: false, probeFreeze: true })) },
    ]);
    await ctx.phase("checks", () => {
      checkRestored(ctx, [session], held.result, after);
      for (const m of kept) {
        const post = findMemfd(after, SEALED, m.token);
        const want = sealProbe(post?.seals ?? 0);
        ctx.check(
          JSON.stringify(post?.freeze_probe) === JSON.stringify(want),
          `memfd ${m.token} with seals 0x${post?.seals.toString(16)}: the restored seals do not act as seals`,
          [`probe    ${JSON.stringify(post?.freeze_probe)}`, `expected ${JSON.stringify(want)}`],
        );
      }
      return Promise.resolve();
    });
    ctx.note(
      `MEMFD_LUO_ALL_SEALS 0x${supported.toString(16)}: ${outcomes.join(", ")}; restored seals identical and enforced`,
    );
  },
};

export const MEMFD_SHAPES: readonly Scenario[] = [
  empty,
  onePage,
  twoMiB,
  big,
  sparse,
  shrunk,
  mmapVsWrite,
  sealed,
  many,
  sessions,
];
