// What the memfd scenarios share: memfd specs turned into agent arguments and into the contents
// the host expects, the agent holding its sessions across the kexec, the before/after
// comparison (contents, size, position, seals, frames, folio shapes), and the host's own
// decoding of the handover (every frame in the preserved-memory map). memfd-basic, chain-memfd
// and the memfd-* variants are built from these.
import { randomInt } from "node:crypto";
import {
  isAgentError,
  pfnAddresses,
  pfnByPage,
  type AgentError,
  type AgentMemfd,
  type AgentPreserveResult,
} from "../agent/protocol.js";
import { memfdModel, memfdPatternSha256, type MemfdLayout } from "../image/agent-build.js";
import { directReader, GuestPhysMemory } from "../memory/guest-memory.js";
import { agentFailure, parseAgentLine, type ScenarioContext } from "../orchestrate/context.js";
import { formatTimeline, type BootTiming } from "../session/boot-timeline.js";
import {
  checkHandover,
  dropPreKexecMemory,
  readMemoryBeforeKexec,
  type PreKexecMemory,
} from "../memory/handover.js";
import { NEXT_KERNEL } from "../session/kexec.js";
import { CheckFailed } from "../api/outcome.js";
import type { DecodedKho, PhysMemory } from "../kho/abi.js";
import type { ExecStream } from "../vm/ssh.js";
import type { Capability, GuestBoot, Scenario } from "../api/scenario.js";

export const MiB = 1024 * 1024;
/** The agent's preserve/restore options that load the next kernel (see kexec.ts). */
const LOAD_OPTIONS = `--kexec-kernel ${NEXT_KERNEL.kernel} --kexec-initrd ${NEXT_KERNEL.initrd} --reuse-cmdline`;
/**
 * Above this size a `restore`-mode restore does not hash: the agent checks every byte against
 * its model in the guest (`nohash`), since SHA-256 of 256 MiB takes about 5 s under TCG. The
 * preserve step checked the same bytes against the host's own model (hash or frames), so the
 * agent's model is already tied to the host's.
 */
const HASH_LIMIT = 64 * MiB;

/** One memfd as the agent creates it (guest/agent/README.md, memfd options). */
export interface MemfdSpec {
  readonly token: number;
  readonly size: number;
  /** Pattern seed; `seeded()` gives a fresh random one when absent. */
  readonly seed?: bigint;
  readonly fill?: "write" | "mmap";
  readonly sparse?: number;
  readonly truncate?: number;
  readonly pos?: number;
  /** F_ADD_SEALS names joined by "+", e.g. "shrink+grow". */
  readonly seals?: string;
  readonly thp?: boolean;
  readonly hugetlb?: boolean;
  /** A failed PRESERVE_FD / RETRIEVE_FD is reported by the agent instead of ending it. */
  readonly try?: boolean;
  /** The agent's probe-freeze: size changes and writes, each reported as "ok" or an errname. */
  readonly probeFreeze?: boolean;
}

export interface SessionSpec {
  readonly name: string;
  readonly memfds: readonly MemfdSpec[];
}

export type SeededMemfd = MemfdSpec & { readonly seed: bigint };
export interface SeededSession {
  readonly name: string;
  readonly memfds: readonly SeededMemfd[];
}

/** Fresh random seeds for memfds that have none, so every run writes new contents. */
export function seeded(sessions: readonly SessionSpec[]): SeededSession[] {
  return sessions.map((s) => ({
    ...s,
    memfds: s.memfds.map((m) => ({ ...m, seed: m.seed ?? BigInt(randomInt(1, 2 ** 47)) })),
  }));
}

/**
 * How the agent vouches for a memfd's contents. `hash`: SHA-256 of what it reads back, compared
 * with the host's. `host-reads`: it does not read them (`noread`); the host reads the memfd's
 * frames from guest memory and compares them with its model (before the kexec: 0.1 s of
 * read-back and SHA-256 under TCG saved). `model`: the agent compares what it reads back with
 * its model of the pattern (`nohash`), tied to the host's by a boot-1 check.
 */
export type ContentsCheck = "hash" | "host-reads" | "model";

/** `TOKEN:SIZE:opts` for the agent. */
export function memfdArg(m: MemfdSpec, check: ContentsCheck = "hash"): string {
  const opts = [
    m.seed !== undefined ? `seed=${m.seed}` : "",
    m.fill ?? "",
    m.sparse ? `sparse=${m.sparse}` : "",
    m.truncate !== undefined ? `truncate=${m.truncate}` : "",
    m.pos !== undefined ? `pos=${m.pos}` : "",
    m.seals ? `seal=${m.seals}` : "",
    m.thp ? "thp" : "",
    m.hugetlb ? "hugetlb" : "",
    m.try ? "try" : "",
    m.probeFreeze ? "probe-freeze" : "",
    check === "model" ? "nohash" : check === "host-reads" ? "noread" : "",
  ].filter(Boolean);
  return `${m.token}:${m.size}${opts.length ? `:${opts.join(",")}` : ""}`;
}

/**
 * `--session NAME --memfd ...` for every session, every memfd checked as `mode` says (see
 * ContentsCheck); `restore` hashes up to HASH_LIMIT and checks bigger memfds against the model.
 */
export function sessionArgs(
  sessions: readonly SessionSpec[],
  mode: ContentsCheck | "restore" = "hash",
): string {
  const check = (m: MemfdSpec): ContentsCheck =>
    mode === "restore" ? (m.size <= HASH_LIMIT ? "hash" : "model") : mode;
  return sessions
    .map((s) => [`--session ${s.name}`, ...s.memfds.map((m) => `--memfd ${memfdArg(m, check(m))}`)].join(" "))
    .join(" ");
}

const modelShas = new Map<string, string>();

const layoutOf = (m: MemfdSpec): MemfdLayout => ({
  ...(m.sparse ? { sparse: m.sparse } : {}),
  ...(m.truncate !== undefined ? { truncate: m.truncate } : {}),
});

const modelKey = (m: SeededMemfd) => JSON.stringify([String(m.seed), m.size, layoutOf(m)]);

/**
 * The SHA-256 the host expects for a memfd, from its own model of the agent's fill. Asked for
 * before and after the kexec: remembered, since 256 MiB of model costs the host a second.
 */
export function expectedSha(m: SeededMemfd): string {
  const key = modelKey(m);
  let sha = modelShas.get(key);
  if (sha === undefined) {
    sha = memfdPatternSha256(m.seed, m.size, layoutOf(m));
    if (modelShas.size > 256) modelShas.clear();
    modelShas.set(key, sha);
  }
  return sha;
}

export function findMemfd(
  r: AgentPreserveResult,
  session: string,
  token: number | bigint,
): AgentMemfd | undefined {
  return r.sessions.find((s) => s.name === session)?.memfds.find((m) => m.token === String(token));
}

export const framesText = (m: AgentMemfd): string => JSON.stringify(m.pfns);

/** Every memfd of every session with its session: what a check walks. */
export function eachMemfd<M extends MemfdSpec>(
  sessions: readonly { readonly name: string; readonly memfds: readonly M[] }[],
): [{ readonly name: string }, M][] {
  return sessions.flatMap((s) => s.memfds.map((m): [{ readonly name: string }, M] => [s, m]));
}

// ------------------------------------------------------------------------------------------------
// The agent holding its sessions across the kexec

export interface HeldAgent<T> {
  readonly result: T;
  readonly stream: ExecStream;
}

/**
 * Starts `kho-agent ARGS --wait` with the next kernel loaded (on a shared guest, the kexec loads
 * it once for all: Guest.loadsAtKexec); it holds every fd until told to
 * kexec. Returns its first line, an error object included (the agent exits after one).
 */
export async function startHolding(
  ctx: ScenarioContext,
  args: string,
  artifact: string,
  deadlineMs = 120_000,
): Promise<HeldAgent<AgentPreserveResult | AgentError>> {
  const load = ctx.guest.loadsAtKexec ? "" : ` ${LOAD_OPTIONS}`;
  const stream = await ctx.guest.stream(`kho-agent ${args}${load} --wait`);
  const result = parseAgentLine<AgentPreserveResult | AgentError>(
    await stream.readLine(deadlineMs),
    `kho-agent ${args}`,
    stream.stderr(),
  );
  await ctx.artifact(artifact, JSON.stringify(result, null, 2) + "\n");
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
  if (isAgentError(result)) throw agentFailure(result);
  return { result, stream };
}

/** Tells the holding agent to kexec; returns the blackout (kexec to SSH in the new kernel). */
export async function kexecHeld(
  ctx: ScenarioContext,
  stream: ExecStream,
  step = "kexec",
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
        stream.writeLine("kexec");
        return Promise.resolve();
      },
      step,
      failed,
    ),
  );
}

/** Kexecs through the holding agent and notes the blackout with where its time went. */
export async function kexecHeldNoted(ctx: ScenarioContext, stream: ExecStream): Promise<void> {
  ctx.note(`kexec blackout ${formatTimeline((await kexecHeld(ctx, stream)).segments)}`);
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
    ctx.agent<AgentPreserveResult>(
      `restore ${sessionArgs(sessions, check)} ${extra}`,
      "agent-restore.json",
      deadlineMs,
    ),
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
  return r;
}

// ------------------------------------------------------------------------------------------------
// Checks

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
  let memory: GuestPhysMemory | undefined;
  for (const [s, spec] of eachMemfd(sessions)) {
    const m = findMemfd(r, s.name, spec.token);
    const where = `${s.name}/${spec.token}`;
    if (!m) throw new CheckFailed(`the agent reported no memfd ${where}`, [JSON.stringify(r).slice(0, 400)]);
    ctx.check(m.size === spec.size, `memfd ${where}: size ${m.size}, wanted ${spec.size}`);
    ctx.check(
      m.pfns !== null && m.pages_present === m.pages,
      `memfd ${where}: the agent could not read every frame (${m.pages_present} of ${m.pages})`,
      [framesText(m)],
    );
    if (m.sha256 === null && m.expected === undefined) {
      memory ??= new GuestPhysMemory(ctx.guest.vm, ctx.artifactsDir);
      const bad = await firstFrameMismatch(memory, spec, m, models.get(modelKey(spec)));
      ctx.check(bad === undefined, `memfd ${where}: guest memory holds other bytes than the host computed`, [
        `first byte that differs: offset ${bad ?? "?"} of the file, frame 0x${(pfnByPage(m.pfns ?? [])[Math.floor((bad ?? 0) / m.page_size)] ?? 0).toString(16)}`,
      ]);
      continue;
    }
    const want = expectedSha(spec);
    ctx.check(m.sha256 === want, `memfd ${where}: the guest wrote other bytes than the host computed`, [
      `guest ${m.sha256}`,
      `host  ${want}`,
    ]);
  }
}

/** Whole models computed ahead (prepareModels), by modelKey; only memfds up to MODEL_AHEAD. */
type ModelsAhead = ReadonlyMap<string, Uint8Array>;
const MODEL_AHEAD = 16 * MiB;

/**
 * Computes the models of the memfds the boot-1 check will compare with guest memory while the
 * agent fills them (the host waits on SSH meanwhile), 1 MiB at a time so that SSH traffic is
 * served in between: the model is most of that check's time (4 MiB: 20-50 ms).
 */
async function prepareModels(sessions: readonly SeededSession[]): Promise<ModelsAhead> {
  const models = new Map<string, Uint8Array>();
  for (const [, spec] of eachMemfd(sessions)) {
    if (spec.size > MODEL_AHEAD || spec.size === 0) continue;
    const bytes = new Uint8Array(spec.size);
    for (let off = 0; off < spec.size; off += MiB) {
      await new Promise((resolve) => setImmediate(resolve));
      bytes.set(memfdModel(spec.seed, spec.size, layoutOf(spec), off, Math.min(MiB, spec.size - off)), off);
    }
    models.set(modelKey(spec), bytes);
  }
  return models;
}

/**
 * Reads a memfd's frames (as the agent's pagemap gave them) from guest memory, a run of
 * contiguous frames at a time, and compares them with the host's model of the file (`ahead`:
 * the whole model, already computed). Returns the offset in the file of the first byte that
 * differs, or undefined.
 */
export async function firstFrameMismatch(
  memory: PhysMemory,
  spec: SeededMemfd,
  m: AgentMemfd,
  ahead?: Uint8Array,
): Promise<number | undefined> {
  const page = m.page_size;
  const byPage = pfnByPage(m.pfns ?? []);
  const MAX_RUN = 256; // pages per read: 1 MiB
  for (let i = 0; i < byPage.length;) {
    const pfn = byPage[i];
    if (pfn == null) return i * page;
    let n = 1;
    while (n < MAX_RUN && i + n < byPage.length && byPage[i + n] === pfn + n) n++;
    const offset = i * page;
    const length = Math.min(n * page, spec.size - offset);
    const got = Buffer.from(await memory.readPhys(BigInt(pfn) * BigInt(page), length));
    const want = Buffer.from(
      ahead?.subarray(offset, offset + length) ??
        memfdModel(spec.seed, spec.size, layoutOf(spec), offset, length),
    );
    if (!got.equals(want)) {
      let at = 0;
      while (at < length && got[at] === want[at]) at++;
      return offset + at;
    }
    i += n;
  }
  return undefined;
}

/**
 * Boot 2: every memfd came back with the host's expected contents, its size, position and seals,
 * on the very frames it had, in folios of the same orders.
 */
export function checkRestored(
  ctx: ScenarioContext,
  sessions: readonly SeededSession[],
  before: AgentPreserveResult,
  after: AgentPreserveResult,
): { memfds: number; bytes: number; frames: number } {
  let bytes = 0;
  let frames = 0;
  for (const [s, spec] of eachMemfd(sessions)) {
    const where = `${s.name}/${spec.token}`;
    const pre = findMemfd(before, s.name, spec.token);
    const post = findMemfd(after, s.name, spec.token);
    if (!pre || !post) throw new CheckFailed(`memfd ${where} is missing from the agent's report`);
    ctx.check(post.size === pre.size, `memfd ${where}: restored size ${post.size}, preserved ${pre.size}`);
    if (post.sha256 === null) {
      // nohash: the agent compared every byte with the model (which boot 1's check tied to
      // ours); the host's SHA-256 of its model is evidence only, computed only when needed
      if (post.expected?.match !== true) {
        ctx.check(false, `memfd ${where}: the contents changed across kexec`, [
          `first byte that differs from the model: ${post.expected?.first_mismatch ?? "?"}`,
          `expected ${expectedSha(spec)}`,
          `model    ${post.expected?.sha256 ?? "?"}`,
        ]);
      }
    } else {
      const want = expectedSha(spec);
      ctx.check(post.sha256 === want, `memfd ${where}: the contents changed across kexec`, [
        `expected ${want}`,
        `before   ${pre.sha256}`,
        `after    ${post.sha256}`,
      ]);
    }
    ctx.check(post.pos === pre.pos, `memfd ${where}: file position ${post.pos}, preserved ${pre.pos}`);
    ctx.check(
      post.seals === pre.seals,
      `memfd ${where}: seals 0x${post.seals.toString(16)}, preserved 0x${pre.seals.toString(16)}`,
    );
    ctx.check(
      framesText(post) === framesText(pre),
      `memfd ${where} came back on other physical frames (in-place preservation broken)`,
      [`before ${framesText(pre)}`.slice(0, 800), `after  ${framesText(post)}`.slice(0, 800)],
    );
    const orders = (m: AgentMemfd) => JSON.stringify(m.kpageflags?.folio_orders ?? null);
    ctx.check(orders(post) === orders(pre), `memfd ${where}: folio sizes changed across kexec`, [
      `before ${orders(pre)}`,
      `after  ${orders(post)}`,
    ]);
    bytes += pre.size;
    frames += pre.pages_present;
  }
  for (const s of sessions) {
    ctx.check(
      after.sessions.find((x) => x.name === s.name)?.finished === true,
      `session ${s.name} could not be finished after retrieval`,
    );
  }
  return { memfds: eachMemfd(sessions).length, bytes, frames };
}

const hexOrNone = (pfn: number | null | undefined) => (pfn == null ? "none" : `0x${pfn.toString(16)}`);

export function formatBytes(n: number): string {
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

/** The host's own reading of the preserved-memory map: every frame of the memfds is in it. */
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
  const inFdt = given
    ? Buffer.from(given, "base64")
    : await ctx.guest.readFile("/sys/kernel/debug/kho/in/fdt");
  const report = await checkHandover(ctx, inFdt, dump, frames);
  ctx.check(
    report.missing.length === 0,
    `${report.missing.length} preserved frames are missing from the decoded KHO map`,
    report.missing.slice(0, 10).map((a) => `0x${a.toString(16)}`),
  );
  const luo = report.subtreesAtKexec
    ? checkLuoHandover(ctx, report.decoded, sessions, before)
    : report.subtreesReadAt;
  return `decoded KHO map: ${report.chunks.length} chunks, all ${frames.length} memfd frames found (${report.decodeMs.toFixed(0)} ms); ${luo}`;
}

/**
 * The LUO state the old kernel handed over, as the host decoded it from memory at the kexec:
 * every session and memfd the agent preserved, with the size, position and seals the agent saw,
 * and each serialized folio on the frame the agent saw at its page of the file.
 */
export function checkLuoHandover(
  ctx: ScenarioContext,
  decoded: DecodedKho,
  sessions: readonly SessionSpec[],
  before: AgentPreserveResult,
): string {
  const sub = decoded.subtrees.find((s) => s.name === "LUO");
  const luo = sub?.blob?.kind === "luo" ? sub.blob : undefined;
  if (!luo) {
    throw new CheckFailed(
      sub
        ? `the handed-over LUO state does not decode: ${sub.error?.message ?? "not LUO"}`
        : "the handover has no LUO subtree",
    );
  }
  let folios = 0;
  for (const [s, spec] of eachMemfd(sessions)) {
    const where = `${s.name}/${spec.token}`;
    const session = luo.sessions?.find((x) => x.name === s.name);
    const names = (luo.sessions ?? []).map((x) => x.name);
    if (!session)
      throw new CheckFailed(`the handed-over LUO state has no session ${s.name}`, [
        `sessions: ${names.join(", ")}`,
      ]);
    const file = session.files.find((f) => f.token === BigInt(spec.token));
    const seen = findMemfd(before, s.name, spec.token);
    if (!file?.memfd || !seen) {
      throw new CheckFailed(`the handed-over session ${s.name} has no memfd with token ${spec.token}`, [
        `files: ${session.files.map((f) => `${f.compatible} token 0x${f.token.toString(16)}`).join(", ")}`,
      ]);
    }
    const m = file.memfd;
    ctx.check(
      m.size === BigInt(seen.size) && m.pos === BigInt(seen.pos) && m.seals === seen.seals,
      `memfd ${where}: the handed-over state says size ${m.size}, pos ${m.pos}, seals 0x${m.seals.toString(16)}; the agent saw ${seen.size}, ${seen.pos}, 0x${seen.seals.toString(16)}`,
    );
    const byPage = pfnByPage(seen.pfns ?? []);
    const wrong = (m.folioList ?? []).filter((f) => byPage[Number(f.index)] !== Number(f.pfn));
    ctx.check(
      m.folioList !== undefined && wrong.length === 0,
      `memfd ${where}: ${wrong.length} of ${m.folioList?.length ?? "?"} handed-over folios are not on the frame the agent saw at their page`,
      wrong
        .slice(0, 6)
        .map(
          (f) =>
            `page ${f.index}: handed over pfn 0x${f.pfn.toString(16)}, agent saw ${hexOrNone(byPage[Number(f.index)])}`,
        ),
    );
    folios += m.folioList?.length ?? 0;
  }
  return `LUO state read at the kexec: every session and memfd there, ${folios} folios on the frames the agent saw`;
}

/**
 * Boot 1 of most memfd scenarios: the agent preserves the sessions and holds them, the host checks
 * what it wrote, optionally keeps the old kernel's radix tree (for the decoded-map check), and the
 * guest kexecs.
 */
export async function preserveAndKexec(
  ctx: ScenarioContext,
  sessions: readonly SeededSession[],
  opts: { readonly dump?: boolean; readonly deadlineMs?: number } = {},
): Promise<{ before: AgentPreserveResult; dump: PreKexecMemory | undefined }> {
  // --kho-state: the radix root and RAM map come with the result, not over SSH of their own
  const args = `preserve ${sessionArgs(sessions, "host-reads")}${opts.dump ? " --kho-state" : ""}`;
  // The host reads guest RAM right after: find where QEMU keeps it while the agent works.
  void directReader(ctx.guest.vm);
  const holding = ctx.phase("preserve", () =>
    holdSessions(ctx, args, "agent-preserve.json", opts.deadlineMs),
  );
  const [held, models] = await Promise.all([holding, prepareModels(sessions)]);
  await ctx.phase("checks", () => checkPreserved(ctx, sessions, held.result, models));
  const dump = opts.dump
    ? await ctx.phase("dump", () => readMemoryBeforeKexec(ctx, held.result.kho))
    : undefined;
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
  /** Extra checks on the agent's reports, after the common ones. */
  readonly verify?: (ctx: ScenarioContext, before: AgentPreserveResult, after: AgentPreserveResult) => void;
}

export function memfdScenario(c: MemfdCase): Scenario {
  return {
    id: c.id,
    description: c.description,
    needs: c.needs ?? ["kho", "luo", "luo-memfd", ...(c.decodeMap ? (["kho-debugfs"] as const) : [])],
    boot: c.boot ?? { kho: true },
    shareable: true,
    async run(ctx) {
      const sessions = seeded(c.sessions);
      await c.prepare?.(ctx);
      const { before, dump } = await preserveAndKexec(ctx, sessions, {
        dump: c.decodeMap === true,
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
        c.verify?.(ctx, before, after);
        ctx.note(
          `${memfds} memfd(s) in ${sessions.length} session(s), ${formatBytes(bytes)}: contents as computed by the host, ${frames} frames identical before and after`,
        );
        if (dump) {
          ctx.note(await checkFramesInMap(ctx, dump, sessions, before, after));
          await dropPreKexecMemory(dump);
        }
      });
    },
  };
}
