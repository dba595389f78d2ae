// `kho bench handover`'s guest: one boot and one kexec, preserving one amount of memory in one
// shape (a memfd through LUO, test-module folios of order 0 or 9, or half of each)
// and measuring what the handover cost: its phases, cut from the console (src/bench/
// handover-phases.ts) and the agent's or module's own timings, and the memory side (the radix
// tree decoded on the host before the kexec, the scratch areas, what each kernel reserved). Every
// handover is also checked: the bytes came back (the agent compares each with its model) or the
// module found every block's pattern; a bench of a broken handover fails, it does not report times.
// A guest per size, not a chain of kexecs in one: a kexec'd kernel has no debugfs kho/out/fdt, so
// only a first boot lets the host find and decode the tree (and a first handover is the common
// case). Not in the default selection: the bench builds it with its size and guest.
import { AgentPreserveResultSchema } from "../agent/protocol.js";
import { sessionArgs, seeded } from "../agent/memfd-args.js";
import type { ScenarioContext } from "../api/context.js";
import type { Scenario } from "../api/scenario.js";
import { cutHandover, reservedKiB } from "../bench/handover-phases.js";
import type { HandoverMemory, HandoverShape } from "../bench/handover-types.js";
import { checkRestored, holdSessions, kexecHeld } from "./memfd-common.js";
import { kexecWithAgent } from "./kexec-step.js";
import { loadModule, planGroup, preserveGroups, restoredEntries, type PlannedGroup } from "./kmod-blocks.js";
import { scratchAreas } from "./handover-step.js";
import { snapshotRadixTree } from "../memory/radix-snapshot.js";
import { CheckFailed } from "../api/outcome.js";

const MiB = 1024 * 1024;
const PAGE = 4096;
const SESSION = "kho-bench";
/** Filling or reading 1 GiB under TCG takes tens of seconds: the agent's calls get minutes. */
const AGENT_DEADLINE_MS = 10 * 60_000;

/** The bytes of each kind a shape preserves for `size` (mixed: half a memfd, half order-9 folios). */
export function shapeParts(
  shape: HandoverShape,
  size: number,
): { memfd: number; order: number; folios: number } {
  const order9 = 2 * MiB;
  switch (shape) {
    case "memfd":
      return { memfd: size, order: 0, folios: 0 };
    case "folios-order0":
      return { memfd: 0, order: 0, folios: size / PAGE };
    case "folios-order9":
      return { memfd: 0, order: 9, folios: size / order9 };
    case "mixed":
      return { memfd: size / 2, order: 9, folios: size / 2 / order9 };
  }
}

export interface HandoverCostOptions {
  readonly shape: HandoverShape;
  /** Bytes to preserve. */
  readonly size: number;
  /** The same for every size of a bench: the kernel's reservations depend on it. */
  readonly memoryMiB: number;
  /** Extra kernel parameters (the bench's A/B side). */
  readonly append?: string;
}

async function preserve(ctx: ScenarioContext, shape: HandoverShape, size: number) {
  const parts = shapeParts(shape, size);
  const groups: PlannedGroup[] = [];
  if (parts.folios > 0) {
    // The module takes at most 1024 blocks a group.
    for (let left = parts.folios; left > 0; left -= 1024)
      groups.push(planGroup({ kind: "folio", order: parts.order, count: Math.min(1024, left), free: true }));
    await preserveGroups(ctx, groups);
  }
  if (parts.memfd === 0) return { groups, held: undefined, sessions: undefined };
  const sessions = seeded([{ name: SESSION, memfds: [{ token: 1, size: parts.memfd }] }]);
  // noread: the agent fills and preserves; the check is the next kernel's (every byte, nohash).
  const held = await ctx.phase("preserve", () =>
    holdSessions(
      ctx,
      `preserve ${sessionArgs(sessions, "host-reads")} --kho-state`,
      "agent-preserve.json",
      AGENT_DEADLINE_MS,
    ),
  );
  return { groups, held, sessions };
}

/** The radix tree as the host reads it before the kexec: its own pages and the pages it marks. */
async function treeFigures(
  ctx: ScenarioContext,
  state: Parameters<typeof snapshotRadixTree>[1],
): Promise<{ radixPages: number; preservedPages: number }> {
  const snap = await ctx.phase("radix", () => snapshotRadixTree(ctx, state));
  if ("why" in snap) throw new CheckFailed(`the preserved-memory tree could not be read: ${snap.why}`);
  const preservedPages = snap.snapshot.chunks.reduce((n, c) => n + 2 ** c.order, 0);
  return { radixPages: snap.snapshot.pages.size, preservedPages };
}

async function meminfoKiB(ctx: ScenarioContext, field: string): Promise<number | undefined> {
  const text = await ctx.guest.run(`grep '^${field}:' /proc/meminfo || true`);
  const m = /(\d+)\s*kB/.exec(text);
  return m ? Number(m[1]) : undefined;
}

async function oneHandover(ctx: ScenarioContext, shape: HandoverShape, size: number): Promise<void> {
  const reservedBefore = reservedKiB(await ctx.guest.run("dmesg | grep -m1 'Memory: ' || true"));
  const scratch = await scratchAreas(ctx);
  const scratchBytes = Number(scratch.reduce((n, r) => n + (r.end - r.start), 0n));
  const { groups, held, sessions } =
    size === 0 ? { groups: [], held: undefined, sessions: undefined } : await preserve(ctx, shape, size);
  const tree = await treeFigures(ctx, held?.result.kho);
  const since = ctx.guest.console.mark();
  const blackout = held ? await kexecHeld(ctx, held.stream) : await kexecWithAgent(ctx);
  const lines = ctx.guest.console.entriesSince(since);
  // The evidence of the cut, and a recorded console for the cutting's unit tests.
  await ctx.artifact("handover-console.jsonl", lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  const cut = cutHandover(lines);
  ctx.check(
    cut.missing.length === 0,
    `the console lacks the landmarks of ${cut.missing.join(", ")}`,
    ctx.guest.console.lastLines(40),
  );
  const phasesMs: Record<string, number> = { ...cut.phasesMs };
  phasesMs.blackout = blackout.totalMs;
  if (held && sessions) {
    const after = await ctx.phase("restore", () =>
      ctx.agent(`restore ${sessionArgs(sessions, "model")} --finish`, AgentPreserveResultSchema, {
        artifact: "agent-restore.json",
        deadlineMs: AGENT_DEADLINE_MS,
      }),
    );
    checkRestored(ctx, sessions, held.result, after);
    // (a NaN would be null in report.json, which its schema refuses: an agent without timings
    // leaves the phases out)
    if (after.timings_ms) {
      phasesMs["luo-retrieve"] = after.timings_ms.retrieve_fd;
      phasesMs.readback = after.timings_ms.contents;
    }
  }
  if (groups.length) {
    const t = performance.now();
    await loadModule(ctx);
    phasesMs["module-restore"] = Math.round(performance.now() - t);
    const { entries, badPages } = await restoredEntries(ctx, groups);
    const bad = entries.filter((e) => e.error || e.pattern_ok !== true);
    ctx.check(bad.length === 0 && badPages.length === 0, `${bad.length} restored blocks are wrong`, [
      JSON.stringify(bad[0] ?? {}),
      ...badPages.slice(0, 8),
    ]);
  }
  const memTotal = await meminfoKiB(ctx, "MemTotal");
  const memory: HandoverMemory = {
    ...tree,
    scratchBytes,
    ...(reservedBefore !== undefined ? { reservedKiBBefore: reservedBefore } : {}),
    ...(cut.reservedKiBAfter !== undefined ? { reservedKiBAfter: cut.reservedKiBAfter } : {}),
    ...(memTotal !== undefined ? { memTotalKiBAfter: memTotal } : {}),
  };
  const phases = Object.entries(phasesMs)
    .map(([k, v]) => `${k} ${Math.round(v)}`)
    .join(", ");
  ctx.note(
    `${shape} ${sizeArg(size)}: ${phases} ms; tree ${tree.radixPages} pages for ${tree.preservedPages}`,
    {
      kind: "handover-cost",
      shape,
      sizeBytes: size,
      phasesMs,
      memory: { ...memory },
    },
  );
}

/** "64M", "1G", "0": a size as `--sizes` takes it (parseSizes reads it back), and in scenario ids. */
export function sizeArg(size: number): string {
  if (size >= 1024 * MiB && size % (1024 * MiB) === 0) return `${size / 1024 / MiB}G`;
  if (size >= MiB && size % MiB === 0) return `${size / MiB}M`;
  return size >= 1024 && size % 1024 === 0 ? `${size / 1024}K` : String(size);
}

export function handoverCostScenario(o: HandoverCostOptions): Scenario {
  return {
    id: `handover-${o.shape}-${sizeArg(o.size)}`,
    description: `the cost of a handover preserving ${sizeArg(o.size)} as ${o.shape}: phases from the console, memory from the decoded tree`,
    needs: ["kho", "kho-debugfs", ...(shapeParts(o.shape, MiB).memfd ? (["luo", "luo-memfd"] as const) : [])],
    boot: {
      kho: true,
      memoryMiB: o.memoryMiB,
      // early lines reach the host as they are printed: the phases' clock (handover-phases.ts)
      earlyConsole: true,
      ...(o.append ? { append: o.append } : {}),
    },
    // a 1 GiB fill and read-back take minutes under TCG
    deadlineMs: 10 * 60_000 + (o.size / MiB) * 400,
    async run(ctx) {
      await oneHandover(ctx, o.shape, o.size);
    },
  };
}
