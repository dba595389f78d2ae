// `kho corrupt`: what the next kernel does with a damaged handover. One guest per case: boot 1
// preserves a memfd through LUO (and the kernel's own test_kho folios, and a reserve_mem
// region); the host reads the radix tree, then stops the guest at the kexec (machine_kexec, after
// every KHO and LUO serializer ran), locates every field of the handover (src/corrupt/locate.ts),
// writes the case's mutation (only inside those structures: src/corrupt/guard.ts), lets the
// guest go on, and judges the new kernel from its console and, when it comes up, over SSH:
//   refused  it said so (a KHO/LUO/memblock error line, the evidence) and went on without the data
//   accepted it used the data (a finding: which field, what the kernel did with it)
//   warned   a WARNING
//   oops / panic / hang  as the console watchdog saw it
// A panic, oops, hang or silently used corrupt value is a kernel weakness: the case fails, unless
// its expectation (keyed by a capability read from the kernel's source) marks it expected.
import { requireHostMemory } from "../memory/access.js";
import {
  isAgentError,
  AgentPreserveResultSchema,
  type AgentError,
  type AgentPreserveResult,
} from "../agent/protocol.js";
import { MiB, seeded, sessionArgs } from "../agent/memfd-args.js";
import type { ScenarioContext } from "../api/context.js";
import { CheckFailed } from "../api/outcome.js";
import type { Expectation, KernelFeature, Scenario } from "../api/scenario.js";
import { CORRUPT_CASES, seededRandom, type CorruptCase } from "../corrupt/cases.js";
import { guardWrite } from "../corrupt/guard.js";
import { judge, REFUSAL, WARNING } from "../corrupt/judge.js";
import { locateHandover } from "../corrupt/locate.js";
import { directReader } from "../memory/guest-memory.js";
import { readMemoryBeforeKexec } from "../memory/handover.js";
import { readRootFdt } from "../memory/radix-snapshot.js";
import type { ScenarioResult } from "../report/verdict.js";
import type { AtHandover } from "../session/handover-pause.js";
import { GuestFault } from "../vm/fault.js";
import { scratchAreas } from "./handover-step.js";
import { holdSessions, kexecHeld } from "./memfd-common.js";

const REGION = "harness_rm";
const hex = (v: bigint) => `0x${v.toString(16)}`;
const bytesHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** What the watchdog would otherwise take for a fault: a case wants to see the kernel go on. */
const ALLOWED = [REFUSAL, WARNING];

interface Written {
  readonly writes: { phys: string; what: string; before: string; after: string }[];
}

/** Writes the case's mutation into the paused guest; what it changed, or why it could not. */
async function mutate(
  ctx: ScenarioContext,
  c: CorruptCase,
  seed: number,
  pages: ReadonlyMap<bigint, Uint8Array>,
  ram: readonly { start: bigint; end: bigint }[],
  scratch: readonly { start: bigint; end: bigint }[],
  fdtPhys: bigint,
  live: Parameters<typeof locateHandover>[0],
): Promise<Written | { readonly skip: string } | { readonly error: string }> {
  const fdt = await readRootFdt(live, fdtPhys);
  if (!fdt) return { error: `no root FDT at ${hex(fdtPhys)} at the kexec` };
  const map = await locateHandover(live, fdtPhys, fdt, pages, ram, scratch);
  const planned = c.plan(map, seededRandom(seed));
  if (typeof planned === "string") return { skip: planned };
  const writer = await directReader(requireHostMemory(ctx.guest));
  if (!writer) return { error: "this host cannot write QEMU's memory (/proc/<qemu pid>/mem)" };
  const writes: Written["writes"] = [];
  for (const w of planned) {
    guardWrite(w, map.writable);
    const before = await live.readPhys(w.phys, w.bytes.length);
    if (!writer.write(w.phys, w.bytes)) return { error: `the write at ${hex(w.phys)} (${w.what}) failed` };
    const back = await live.readPhys(w.phys, w.bytes.length);
    if (bytesHex(back) !== bytesHex(w.bytes)) return { error: `the write at ${hex(w.phys)} did not stick` };
    writes.push({ phys: hex(w.phys), what: w.what, before: bytesHex(before), after: bytesHex(w.bytes) });
  }
  return { writes };
}

export const CORRUPT_DEFAULT_SEED = 1;

/** The scenario of one case; `expectation` when 7.2 is known to be weak against it. */
export function corruptScenario(c: CorruptCase, expectation?: Expectation): Scenario {
  return {
    id: `corrupt-${c.id}`,
    description: `damaged handover: ${c.description}; the next kernel must refuse it and go on`,
    needs: ["kho", "kho-debugfs", "test-kho"],
    // The early console: a crash before the console driver (the radix walk runs in mm_core_init)
    // prints its lines instead of QEMU just exiting after "Starting new kernel".
    boot: { kho: true, append: `reserve_mem=2M:4096:${REGION}`, earlyConsole: true },
    params: { seed: CORRUPT_DEFAULT_SEED },
    ...(expectation ? { expectation } : {}),
    async run(ctx) {
      const seed = Number(ctx.params.seed ?? CORRUPT_DEFAULT_SEED);
      const sessions = seeded([{ name: "kho-corrupt", memfds: [{ token: 1, size: 4 * MiB }] }]);
      void directReader(requireHostMemory(ctx.guest));
      const held = await ctx.phase("preserve", () =>
        holdSessions(ctx, `preserve ${sessionArgs(sessions, "hash")} --kho-state`, "agent-preserve.json"),
      );
      const kept = await ctx.phase("dump", () => readMemoryBeforeKexec(ctx, held.result.kho));
      if (kept.memory.kind !== "radix" || kept.memory.snapshot.rootFdtPhys === undefined)
        throw new Error(`the radix tree could not be read live (${kept.note}): no place to write`);
      const snap = kept.memory.snapshot;
      const scratch = await scratchAreas(ctx);
      const fdtPhys = snap.rootFdtPhys as bigint;
      const at = ctx.guest.atNextHandover(`corrupt-${c.id}`, () =>
        mutate(ctx, c, seed, snap.pages, snap.ram, scratch, fdtPhys, snap.live),
      );
      const since = ctx.guest.console.mark();
      // Until the new kernel is judged, its refusals and warnings are what is looked for, not faults.
      const unallow = ctx.guest.console.allow(ALLOWED);
      try {
        await judgeCase(ctx, c, seed, sessions, held.stream, at, since);
      } finally {
        unallow();
      }
    },
  };
}

/** How the memfd came back: its size against the preserved 4 MiB, and whether its bytes match. */
function memfdDetail(r: AgentPreserveResult): string {
  const m = r.sessions[0]?.memfds[0];
  if (!m) return "no memfd in the session";
  const want = m.expected;
  return `size ${m.size}${want && want.size !== m.size ? ` (preserved ${want.size})` : ""}, contents ${want?.match === false ? "differ" : "match"}`;
}

/** The kexec with the mutation written at its pause, and the verdict on the new kernel. */
async function judgeCase(
  ctx: ScenarioContext,
  c: CorruptCase,
  seed: number,
  sessions: Parameters<typeof sessionArgs>[0],
  stream: Parameters<typeof kexecHeld>[1],
  at: Promise<AtHandover<Awaited<ReturnType<typeof mutate>>>>,
  since: number,
): Promise<void> {
  let fault: GuestFault | undefined;
  try {
    await kexecHeld(ctx, stream);
  } catch (e) {
    if (!(e instanceof GuestFault)) throw e;
    fault = e;
  }
  const paused = await at;
  if (paused.kind !== "read")
    throw new Error(`the guest was not stopped at the kexec to write the mutation: ${paused.detail}`);
  if (paused.late) throw new Error("the pause came after the new kernel's banner: the write was too late");
  const written = paused.value;
  if ("skip" in written) return ctx.skip(`this handover has nothing for the case: ${written.skip}`);
  if ("error" in written) throw new Error(`the mutation was not written: ${written.error}`);
  await ctx.artifact(
    "corruption.json",
    JSON.stringify({ case: c.id, seed, writes: written.writes }, null, 2) + "\n",
  );
  for (const w of written.writes) ctx.note(`wrote ${w.what} at ${w.phys}: ${w.before} -> ${w.after}`);
  // The kernel came up: did it use what it was handed? (LUO reads its sessions at the first
  // open of /dev/liveupdate, so a refusal may come now; a fault now is the kernel's too.)
  let restored: AgentPreserveResult | AgentError | undefined;
  if (!fault)
    try {
      restored = await ctx.agentOutcome(
        `restore ${sessionArgs(sessions, "hash")} --finish`,
        AgentPreserveResultSchema,
        { artifact: "agent-restore.json" },
      );
    } catch (e) {
      if (!(e instanceof GuestFault)) throw e;
      fault = e;
    }
  const lines = ctx.guest.console
    .entriesSince(since)
    .filter((l) => l.boot > 1)
    .map((l) => l.text);
  const j = judge(
    {
      ...(fault ? { fault: { kind: fault.kind, excerpt: fault.excerpt, message: fault.message } } : {}),
      lines,
      ...(restored
        ? {
            memfd: isAgentError(restored)
              ? { ok: false as const, error: restored.errname ?? restored.error }
              : { ok: true as const, detail: memfdDetail(restored) },
          }
        : {}),
    },
    c.group === "none",
  );
  ctx.fact({ kind: "corruption", case: c.id, seed, outcome: j.outcome, writes: written.writes });
  await ctx.artifact("outcome.txt", [j.outcome, j.detail, ...j.evidence].join("\n") + "\n");
  if (c.group === "none") {
    // The same result as the unmutated scenario: everything handed over is used as usual.
    const whole =
      j.outcome === "accepted" &&
      restored !== undefined &&
      !isAgentError(restored) &&
      lines.some((l) => /test_kho: KHO restore succeeded/.test(l));
    ctx.check(whole, `the unchanged handover was not taken as it is: ${j.outcome}: ${j.detail}`, j.evidence);
    ctx.note(`no-op write: the next kernel used the handover as usual (${j.detail})`);
    return;
  }
  if (j.weakness) {
    const did =
      j.outcome === "accepted"
        ? "used the corrupt value without a word"
        : { hang: "hung", oops: "oopsed", panic: "panicked", warned: "warned", refused: "refused" }[
            j.outcome
          ];
    throw new CheckFailed(`the next kernel ${did}: ${j.detail}`, j.evidence);
  }
  ctx.note(`${j.outcome}: ${j.evidence[0] ?? j.detail}`);
}

/** Every case as a scenario, in matrix order. */
export function corruptScenarios(
  expectations: Readonly<Record<string, Expectation>> = CORRUPT_EXPECTATIONS,
): Scenario[] {
  return CORRUPT_CASES.map((c) => corruptScenario(c, expectations[c.id]));
}

const weak = (unless: KernelFeature, reason: string): Expectation => ({ unless, reason, consoleLines: [] });

const MAP_UNCHECKED = weak(
  "kho-map-checked",
  "7.2's kho_mem_retrieve walks preserved-memory-map without checking it (kexec_handover.c:1411-1431): the walk in mm_core_init faults before the console driver is up",
);
const RADIX_UNCHECKED = weak(
  "kho-radix-checked",
  "7.2's radix walk reserves and initialises every decoded chunk without checking its order, RAM or a cycle (kho_preserved_memory_reserve, kexec_handover.c:497-515): __init_page_from_nid faults on a struct page with no memmap",
);
const LUO_PANICS = weak(
  "luo-corrupt-no-panic",
  "7.2's luo_restore_fail() is panic() (luo_internal.h:42): a LUO state that fails to deserialize in the early initcall stops the kernel ('The incoming tree failed to initialize properly [-EINVAL], disabling live update')",
);

/** What 7.2 is known to get wrong, by case (README "Damaged handovers"): each a kernel weakness. */
export const CORRUPT_EXPECTATIONS: Readonly<Record<string, Expectation>> = {
  "fdt-map-outside-ram": MAP_UNCHECKED,
  "fdt-map-unaligned": MAP_UNCHECKED,
  "fdt-map-not-a-node": MAP_UNCHECKED,
  "radix-order-too-big": RADIX_UNCHECKED,
  "radix-frame-outside-ram": RADIX_UNCHECKED,
  "radix-loop": RADIX_UNCHECKED,
  "radix-scratch-bit": weak(
    "kho-radix-checked",
    "7.2's radix walk reserves a chunk inside the KHO scratch area, the memory the new kernel boots in, without a word (kho_preserved_memory_reserve, kexec_handover.c:497-515; the scratch overlap is checked only when preserving)",
  ),
  "luo-compatible": LUO_PANICS,
  "luo-block-count": LUO_PANICS,
  "luo-block-loop": LUO_PANICS,
  "luo-memfd-size": weak(
    "memfd-size-checked",
    "7.2's memfd_luo_retrieve sets the file's size from the handed-over value without checking it against its folios (memfd_luo.c:553): the memfd comes back larger, its tail zeros",
  ),
  "memblock-outside-ram": weak(
    "reserve-mem-checked",
    "7.2's reserve_mem_kho_revive takes a region's address without checking that it is memory (memblock.c:2683-2703): the late initcall that preserves it again faults on its struct pages (__kho_preserve_pages_order)",
  ),
};

/** The matrix as a table: case by outcome per arch (from each result's corruption fact). */
export function corruptionTable(results: readonly ScenarioResult[]): string {
  const arches = [...new Set(results.map((r) => r.arch))];
  const cases = [...new Set(results.map((r) => r.id))];
  const cell = (id: string, arch: string) => {
    const r = results.find((x) => x.id === id && x.arch === arch);
    const f = r?.facts?.find((x) => x.kind === "corruption");
    return f && f.kind === "corruption" ? `${f.outcome} (${r?.verdict ?? "?"})` : (r?.verdict ?? "-");
  };
  const rows = cases.map((id) => [id.replace(/^corrupt-/, ""), ...arches.map((a) => cell(id, a))]);
  const header = ["case", ...arches];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return ["what the next kernel did with each damaged handover:", line(header), ...rows.map(line)].join("\n");
}
