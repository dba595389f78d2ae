// What the memfd scenarios share: the agent holding its sessions across the kexec, the boot-1
// and boot-2 checks run on what it reported (src/checks/memfd.ts), the host's own decoding of
// the handover (src/checks/handover.ts), and the plain case as a scenario. memfd-basic,
// chain-memfd and the memfd-* variants are built from these.
import {
  AgentPreserveResultSchema,
  isAgentError,
  pfnAddresses,
  type AgentError,
  type AgentPreserveResult,
} from "../agent/protocol.js";
import { agentErrorText } from "../agent/client.js";
import {
  eachMemfd,
  formatBytes,
  seeded,
  sessionArgs,
  type SeededSession,
  type SessionSpec,
} from "../agent/memfd-args.js";
import type { ScenarioContext } from "../api/context.js";
import { expectThat } from "../api/findings.js";
import { CheckFailed } from "../api/outcome.js";
import { SCENARIO_DEADLINE_MS, type Capability, type GuestBoot, type Scenario } from "../api/scenario.js";
import { luoFindings } from "../checks/handover.js";
import {
  findMemfd,
  memfdKey,
  memfdsReadByHost,
  preservedFindings,
  restoredFindings,
  type RestoredTotals,
} from "../checks/memfd.js";
import { NO_HOST_MEMORY, requireHostMemory } from "../memory/access.js";
import type { GuestMachine } from "../session/session.js";
import { directReader, GuestPhysMemory } from "../memory/guest-memory.js";
import { dropPreKexecMemory, readMemoryBeforeKexec, type PreKexecMemory } from "../memory/handover.js";
import { checkDecodedHandover } from "./handover-step.js";
import { firstFrameMismatch, modelKey, prepareModels, type ModelsAhead } from "../memory/memfd-frames.js";
import { formatTimeline, type BootTiming } from "../session/boot-timeline.js";
import { loadOptions } from "../session/kexec.js";
import type { ExecStream } from "../vm/ssh.js";

// ------------------------------------------------------------------------------------------------
// The agent holding its sessions across the kexec

export interface HeldAgent<T> {
  readonly result: T;
  readonly stream: ExecStream;
}

/**
 * Starts `kho-agent ARGS --wait` with the next kernel loaded (on a shared guest, the kexec loads
 * it once for all: kexecLoadsNextKernel); it holds every fd until told to kexec. Returns its
 * first line, an error object included (the agent exits after one).
 */
export async function startHolding(
  ctx: ScenarioContext,
  args: string,
  artifact: string,
  deadlineMs = 120_000,
): Promise<HeldAgent<AgentPreserveResult | AgentError>> {
  const load = ctx.guest.kexecLoadsNextKernel ? "" : ` ${loadOptions(ctx.guest.nextKernel)}`;
  const stream = await ctx.guest.stream(`kho-agent ${args}${load} --wait`);
  const line = await stream.readLine(deadlineMs);
  await ctx.artifact(artifact, `${line}\n`);
  const result = ctx.parseAgent(AgentPreserveResultSchema, line, `kho-agent ${args}`, stream.stderr());
  return { result, stream };
}

/** As startHolding, but an agent error fails the scenario. */
export async function holdSessions(
  ctx: ScenarioContext,
  args: string,
  artifact: string,
  deadlineMs?: number,
): Promise<HeldAgent<AgentPreserveResult>> {
  const { result, stream } = await startHolding(ctx, args, artifact, deadlineMs);
  if (isAgentError(result)) throw new CheckFailed(agentErrorText(result), [JSON.stringify(result)]);
  return { result, stream };
}

/** Tells the holding agent to kexec; returns the blackout (kexec to SSH in the new kernel). */
export async function kexecHeld(
  ctx: ScenarioContext,
  stream: ExecStream,
  step = "kexec",
  /** The line that makes the holder reboot. */
  trigger = "kexec",
): Promise<BootTiming> {
  // The agent answers only when the reboot fails. A kexec ends the stream by losing the link,
  // which SSH notices seconds after the new kernel is up: wait for the new kernel, not for that.
  const failed = stream.done.then((outcome): Promise<never> => {
    if (outcome.kind !== "exited") return new Promise<never>(() => undefined);
    throw new CheckFailed(
      `the guest agent exited (${outcome.code ?? outcome.signal}) when told to kexec: no kexec happened`,
      stream.stderr().trimEnd().split("\n").slice(-10),
    );
  });
  return ctx.phase("kexec", () =>
    ctx.guest.kexec(
      () => {
        stream.writeLine(trigger);
        return Promise.resolve();
      },
      step,
      failed,
    ),
  );
}

/** Kexecs through the holding agent and notes the blackout with where its time went. */
export async function kexecHeldNoted(ctx: ScenarioContext, stream: ExecStream): Promise<void> {
  const blackout = await kexecHeld(ctx, stream);
  ctx.note(`kexec blackout ${formatTimeline(blackout.segments)}`, {
    kind: "blackout",
    step: "kexec",
    totalMs: blackout.totalMs,
  });
}

/** Restores and finishes the sessions; memfds are looked up by token, in the order given. With
 *  `--kho-state` in `extra` the result carries kho/in/fdt for the decoded-map check; `check`
 *  says how the agent vouches for the contents (sessionArgs). */
export function restoreSessions(
  ctx: ScenarioContext,
  sessions: readonly SessionSpec[],
  extra = "--finish",
  deadlineMs?: number,
  check: "restore" | "model" = "restore",
): Promise<AgentPreserveResult> {
  return ctx.phase("restore", () =>
    ctx.agent(`restore ${sessionArgs(sessions, check)} ${extra}`, AgentPreserveResultSchema, {
      artifact: "agent-restore.json",
      ...(deadlineMs ? { deadlineMs } : {}),
    }),
  );
}

/** Expects the agent to have failed at `step` with `errname` (an errno the kernel must give). */
export function expectAgentError(
  ctx: ScenarioContext,
  r: AgentPreserveResult | AgentError,
  step: string,
  errname: string,
  what: string,
): AgentError {
  if (!isAgentError(r)) {
    throw new CheckFailed(`${what} succeeded; the kernel should have refused it with ${errname}`, [
      JSON.stringify(r).slice(0, 600),
    ]);
  }
  ctx.check(
    r.step === step && r.errname === errname,
    `${what} failed with ${r.errname ?? r.errno} at ${r.step}, expected ${errname} at ${step}`,
    [JSON.stringify(r).slice(0, 600)],
  );
  ctx.fact({ kind: "errno", operation: step, errname });
  return r;
}

// ------------------------------------------------------------------------------------------------
// Checks (the findings are src/checks/'s; here they are gathered and recorded)

/**
 * Boot 1: the agent filled every memfd as the host's model says (its SHA-256, or, for a memfd
 * it did not read, the frames themselves read from guest memory), and could read every frame.
 */
export async function checkPreserved(
  ctx: ScenarioContext,
  sessions: readonly SeededSession[],
  r: AgentPreserveResult,
  models: ModelsAhead = new Map(),
): Promise<void> {
  const hostReads = new Set(memfdsReadByHost(r));
  const mismatches = new Map<string, number | undefined>();
  let memory: GuestPhysMemory | undefined;
  for (const [s, spec] of eachMemfd(sessions)) {
    const key = memfdKey(s.name, spec.token);
    const m = findMemfd(r, s.name, spec.token);
    if (!m || !hostReads.has(key)) continue;
    memory ??= new GuestPhysMemory(requireHostMemory(ctx.guest), ctx.artifactsDir);
    mismatches.set(key, await firstFrameMismatch(memory, spec, m, models.get(modelKey(spec))));
  }
  ctx.expect(preservedFindings(sessions, r, mismatches));
}

/** Boot 2: contents, size, position, seals, frames and folios as before; sessions finished. */
export function checkRestored(
  ctx: ScenarioContext,
  sessions: readonly SeededSession[],
  before: AgentPreserveResult,
  after: AgentPreserveResult,
): RestoredTotals {
  const { findings, totals } = restoredFindings(sessions, before, after);
  ctx.expect(findings);
  return totals;
}

/**
 * The host's own reading of the preserved-memory map: every frame of the memfds is in it, and the
 * LUO state handed over (read at the kexec pause) holds every session and memfd. When the pause
 * gave nothing to check against, those checks are recorded as not done.
 */
export async function checkFramesInMap(
  ctx: ScenarioContext,
  dump: PreKexecMemory,
  sessions: readonly SessionSpec[],
  before: AgentPreserveResult,
  after?: AgentPreserveResult,
): Promise<string> {
  const frames = eachMemfd(sessions).flatMap(([s, spec]) => {
    const m = findMemfd(before, s.name, spec.token);
    const page = BigInt(m?.page_size ?? 4096);
    return pfnAddresses(m?.pfns ?? [], Number(page)).map((start) => ({
      owner: `memfd ${s.name}/${spec.token}`,
      start,
      end: start + page,
    }));
  });
  const given = after?.kho?.in_fdt;
  const report = await checkDecodedHandover(
    ctx,
    dump,
    frames,
    given ? { inFdt: Buffer.from(given, "base64") } : {},
  );
  ctx.fact({
    kind: "handover-map",
    chunks: report.chunks.length,
    framesFound: frames.length - report.missing.length,
    decodeMs: Math.round(report.decodeMs),
  });
  const map = `decoded KHO map: ${report.chunks.length} chunks, all ${frames.length} memfd frames found (${report.decodeMs.toFixed(0)} ms)`;
  if (report.notDone) {
    ctx.notDone("luo.handover", report.notDone.reason, report.notDone.detail);
    return `${map}; ${report.subtreesReadAt}`;
  }
  const luo = luoFindings(report.decoded, sessions, before);
  // luo.handover sums them up: the id a not-done LUO check is recorded under
  const whole = luo.findings.every((f) => f.ok);
  ctx.expect([
    ...luo.findings,
    expectThat("luo.handover", whole, "the LUO state handed over holds what was preserved"),
  ]);
  const files = eachMemfd(sessions).length;
  ctx.fact({ kind: "luo-handover", sessions: sessions.length, files, folios: luo.folios });
  return `${map}; LUO state read at the kexec: every session and memfd there, ${luo.folios} folios on the frames the agent saw`;
}

/**
 * The QEMU process whose memory the host reads, or, on a machine target, undefined after recording
 * each of `checks` as not done there (never skipped in silence, never counted as passed).
 */
export function hostMemory(ctx: ScenarioContext, checks: readonly string[]): GuestMachine | undefined {
  const machine = ctx.guest.machine;
  if (!machine) for (const check of checks) ctx.notDone(check, "not-on-target", NO_HOST_MEMORY);
  return machine;
}

/**
 * Boot 1 of most memfd scenarios: the agent preserves the sessions and holds them, the host checks
 * what it wrote, optionally keeps the old kernel's radix tree (for the decoded-map check), and the
 * guest kexecs.
 */
export async function preserveAndKexec(
  ctx: ScenarioContext,
  sessions: readonly SeededSession[],
  opts: {
    readonly dump?: boolean;
    readonly deadlineMs?: number;
    /** Boot-1 checks of the scenario's own, on what the agent preserved, before the kexec. */
    readonly afterPreserve?: (ctx: ScenarioContext, before: AgentPreserveResult) => void;
  } = {},
): Promise<{ before: AgentPreserveResult; dump: PreKexecMemory | undefined }> {
  // On a machine target the agent hashes what it wrote (no host read of the frames), and the
  // decoded-map checks are not possible there.
  const machine = hostMemory(ctx, [
    "memfd.frames-by-host",
    ...(opts.dump ? ["kho.decoded-map", "luo.handover"] : []),
  ]);
  // --kho-state: the radix root and RAM map come with the result, not over SSH of their own
  const args = `preserve ${sessionArgs(sessions, machine ? "host-reads" : "hash")}${opts.dump && machine ? " --kho-state" : ""}`;
  // The host reads guest RAM right after: find where QEMU keeps it while the agent works.
  if (machine) void directReader(machine);
  const holding = ctx.phase("preserve", () =>
    holdSessions(ctx, args, "agent-preserve.json", opts.deadlineMs),
  );
  const [held, models] = await Promise.all([holding, prepareModels(sessions)]);
  await ctx.phase("checks", async () => {
    await checkPreserved(ctx, sessions, held.result, models);
    opts.afterPreserve?.(ctx, held.result);
  });
  const kept =
    opts.dump && machine
      ? await ctx.phase("dump", () => readMemoryBeforeKexec(ctx, held.result.kho))
      : undefined;
  if (kept) ctx.note(kept.note);
  const dump = kept?.memory;
  await kexecHeldNoted(ctx, held.stream);
  return { before: held.result, dump };
}

// ------------------------------------------------------------------------------------------------
// The plain case as a scenario: preserve, kexec, restore, compare

export interface MemfdCase {
  readonly id: string;
  readonly description: string;
  readonly sessions: readonly SessionSpec[];
  readonly boot?: GuestBoot;
  readonly needs?: readonly Capability[];
  /** Dump memory before the kexec and check the decoded handover (a few seconds). */
  readonly decodeMap?: boolean;
  /** Retrieve sessions and memfds in the reverse order of their preservation. */
  readonly reverseRestore?: boolean;
  /** Deadline of the agent's preserve and restore calls. */
  readonly deadlineMs?: number;
  /** Boot 1, before the memfds are created. */
  readonly prepare?: (ctx: ScenarioContext) => Promise<void>;
  /** Extra boot-1 checks on what the agent preserved, before the kexec. */
  readonly afterPreserve?: (ctx: ScenarioContext, before: AgentPreserveResult) => void;
  /** Extra checks on the agent's reports, after the common ones. */
  readonly verify?: (
    ctx: ScenarioContext,
    before: AgentPreserveResult,
    after: AgentPreserveResult,
  ) => void | Promise<void>;
}

export function memfdScenario(c: MemfdCase): Scenario {
  return {
    id: c.id,
    description: c.description,
    needs: c.needs ?? ["kho", "luo", "luo-memfd", ...(c.decodeMap ? (["kho-debugfs"] as const) : [])],
    boot: c.boot ?? { kho: true },
    shareable: true,
    // two agent calls of the case's own deadline, and the rest
    ...(c.deadlineMs ? { deadlineMs: SCENARIO_DEADLINE_MS + 2 * c.deadlineMs } : {}),
    async run(ctx) {
      const sessions = seeded(c.sessions);
      await c.prepare?.(ctx);
      const { before, dump } = await preserveAndKexec(ctx, sessions, {
        dump: c.decodeMap === true,
        ...(c.afterPreserve ? { afterPreserve: c.afterPreserve } : {}),
        ...(c.deadlineMs ? { deadlineMs: c.deadlineMs } : {}),
      });
      const order = c.reverseRestore
        ? [...sessions].reverse().map((s) => ({ ...s, memfds: [...s.memfds].reverse() }))
        : sessions;
      // The agent checks every byte it reads back against its model, which boot 1 tied to the
      // host's (the frames held it): a third of the time of hashing them under TCG.
      const after = await restoreSessions(
        ctx,
        order,
        c.decodeMap ? "--finish --kho-state" : "--finish",
        c.deadlineMs,
        "model",
      );
      await ctx.phase("checks", async () => {
        const { memfds, bytes, frames } = checkRestored(ctx, sessions, before, after);
        await c.verify?.(ctx, before, after);
        ctx.note(
          `${memfds} memfd(s) in ${sessions.length} session(s), ${formatBytes(bytes)}: contents as computed by the host, ${frames} frames identical before and after`,
          { kind: "memfds-restored", memfds, sessions: sessions.length, bytes, frames },
        );
        if (dump) {
          ctx.note(await checkFramesInMap(ctx, dump, sessions, before, after));
          await dropPreKexecMemory(dump);
        }
      });
    },
  };
}
