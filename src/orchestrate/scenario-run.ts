// Running scenarios on guests and turning how each ended into a verdict: one guest per
// scenario (runOne), or one guest and one kexec shared by several (runShared, see
// session/shared.ts). The runner (runner.ts) decides which.
import { mkdir, readdir, symlink } from "node:fs/promises";
import { join, relative } from "node:path";
import type { ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import type { CachedKernel } from "../kernel/cache.js";
import type { KernelReport } from "../kernel/inspect.js";
import { kernelSymbols, type SymbolTable } from "../kernel/symbols.js";
import type { KernelFeature } from "../kernel/features.js";
import type { KernelVariantName } from "../kernel/variants.js";
import {
  activeExpectation,
  CAPABILITIES,
  machineTargetSkip,
  SCENARIO_DEADLINE_MS,
  type Expectation,
  type GuestBoot,
  type Scenario,
} from "../api/scenario.js";
import { KERNEL_NOT_DONE, type CheckRecord } from "../api/findings.js";
import type { Logger } from "../util/log.js";
import { scaled, TIMEOUT_FACTOR_ENV } from "../util/deadline.js";
import { diskFullMessage, isDiskFull } from "../host/disk-space.js";
import { GuestFault } from "../vm/fault.js";
import { DEFAULT_MEMORY_MIB, type Accel } from "../vm/qemu.js";
import type { generateKeys } from "../vm/keys.js";
import { SshFailure } from "../vm/ssh.js";
import { RunContext, type KernelUnderTest } from "./context.js";
import { Guest } from "../session/guest.js";
import type { BootTiming } from "../session/boot-timeline.js";
import type { GuestSession, SessionConsole } from "../session/session.js";
import { CheckFailed, Skipped } from "../api/outcome.js";
import { loadNextKernel } from "../session/kexec.js";
import { takeTurns } from "../session/shared.js";
import type { ArchSetup, ScenarioResult } from "../report/verdict.js";
import { mayShare } from "./shard.js";

export type { ArchSetup } from "../report/verdict.js";

/** A kernel variant some scenario kexecs into (Scenario.nextKernel), ready to boot. */
export interface NextVariant {
  readonly image: string;
  readonly release: string;
  readonly config: ReadonlyMap<string, string>;
  /** The next-kernel disk the guest loads it from. */
  readonly disk: string;
  readonly built: CachedKernel;
}

export interface PreparedArch {
  /** A guest the harness starts: its accelerator is QEMU's. */
  readonly summary: ArchSetup & { readonly accel: Accel };
  readonly report: KernelReport;
  readonly bootInitrd: string;
  readonly nextDisk: string;
  /** A kernel variant a scenario kexecs into, built on first use, or why it could not be had. */
  readonly variant: (name: KernelVariantName) => Promise<NextVariant | HarnessError>;
  readonly keys: ReturnType<typeof generateKeys>;
  /** Capabilities of the kernel's source that decide expected failures. */
  readonly features: ReadonlySet<KernelFeature>;
  /** Kernel parameters every guest of this arch gets first, for its memory (a variant's). */
  readonly bootAppend?: (memoryMiB: number) => string;
}

export interface RunWhere {
  /** Artifacts root of this run. */
  readonly outDir: string;
  readonly log: Logger;
}

/** `<out>/<arch>/<name>[/run-K]`: a scenario's (or a shared guest's) artifacts folder. */
function runDir(opts: RunWhere, arch: ArchName, name: string, attempt: number | undefined): string {
  return join(opts.outDir, arch, name, attempt ? `run-${attempt}` : "");
}

function resultBase(scenario: Scenario, arch: ArchName, attempt: number | undefined) {
  return { id: scenario.id, arch, ...(attempt ? { attempt } : {}) };
}

/** The KTAP diagnostic line that opens a scenario's run. */
function announce(opts: RunWhere, scenario: Scenario, arch: ArchName, attempt: number | undefined): void {
  opts.log(`# ${scenario.id}.${arch}${attempt ? ` (run ${attempt})` : ""}: ${scenario.description}`);
}

/**
 * Boots a guest of `prepared`'s kernel and image with `boot`'s parameters, logging into `logDir`;
 * QEMU's -name is `kho-<name>-<arch>[-<attempt>]`.
 */
function startGuest(
  prepared: PreparedArch,
  boot: Scenario["boot"],
  logDir: string,
  name: string,
  attempt: number | undefined,
  opts: RunWhere,
  variant?: NextVariant,
): Promise<Guest> {
  const { arch, kernel, accel } = prepared.summary;
  return Guest.start({
    arch,
    kernel: kernel.image,
    initrd: prepared.bootInitrd,
    nextDisk: variant?.disk ?? prepared.nextDisk,
    boot: prepared.bootAppend
      ? {
          ...boot,
          append: [prepared.bootAppend(boot.memoryMiB ?? DEFAULT_MEMORY_MIB), boot.append ?? ""]
            .join(" ")
            .trim(),
        }
      : boot,
    accel,
    keys: prepared.keys,
    logDir,
    name: `kho-${name}-${arch}${attempt ? `-${attempt}` : ""}`,
    log: opts.log,
    // Only when every boot runs the built kernel: a --next-kernel has other addresses.
    ...(kernel.built && kernel.nextImage === kernel.image && !variant
      ? { symbols: symbolsOf(kernel.built) }
      : {}),
  });
}

/** The built kernel's symbols, read once per kernel and only when a hang asks for them. */
const symbolTables = new Map<string, Promise<SymbolTable | undefined>>();
function symbolsOf(built: CachedKernel): () => Promise<SymbolTable | undefined> {
  return () => {
    let table = symbolTables.get(built.dir);
    if (!table) symbolTables.set(built.dir, (table = kernelSymbols(built)));
    return table;
  };
}

export function missingCapabilities(scenario: Scenario, kernel: KernelUnderTest): string[] {
  return scenario.needs
    .filter((c) => (kernel.config.get(CAPABILITIES[c]) ?? "n") === "n")
    .map((c) => `CONFIG_${CAPABILITIES[c]}`);
}

export async function runOne(
  scenario: Scenario,
  prepared: PreparedArch,
  opts: RunWhere,
  attempt: number | undefined,
): Promise<ScenarioResult> {
  const { arch, kernel } = prepared.summary;
  const started = performance.now();
  const base = resultBase(scenario, arch, attempt);
  const missing = missingCapabilities(scenario, kernel);
  if (missing.length > 0) {
    return {
      ...base,
      verdict: "skip",
      reason: `kernel lacks ${missing.join(", ")}`,
      phaseMs: {},
      totalMs: 0,
    };
  }
  const variantStart = performance.now();
  const variant = scenario.nextKernel ? await prepared.variant(scenario.nextKernel) : undefined;
  const variantMs = Math.round(performance.now() - variantStart);
  if (variant instanceof HarnessError) {
    return {
      ...base,
      verdict: "error",
      reason: `the ${scenario.nextKernel ?? "?"} kernel it kexecs into is not available: ${variant.message}`,
      evidence: variant.evidence,
      phaseMs: { "next kernel": variantMs },
      totalMs: variantMs,
    };
  }
  const artifactsDir = runDir(opts, arch, scenario.id, attempt);
  await mkdir(artifactsDir, { recursive: true });
  announce(opts, scenario, arch, attempt);
  return runSession({
    scenario,
    arch,
    base,
    started,
    artifactsDir,
    opts,
    expectation: activeExpectation(scenario, prepared.features),
    // the variant kernel's build or cache lookup, when the scenario has one
    phaseMs: variant ? { "next kernel": variantMs } : {},
    open: [
      "boot",
      () => startGuest(prepared, scenario.boot, artifactsDir, scenario.id, attempt, opts, variant),
    ],
    kernel: variant
      ? { ...kernel, nextImage: variant.image, nextConfig: new Map(variant.config), nextBuilt: variant.built }
      : kernel,
    memoryMiB: scenario.boot.memoryMiB ?? DEFAULT_MEMORY_MIB,
    what: `${scenario.id} on ${arch}`,
    logError: (guest) => guest.vm.console.logError,
  });
}

/** What runSession needs: the scenario, where its result goes, and how to get its session. */
interface SessionRun<G extends GuestSession & RunGuest> {
  readonly scenario: Scenario;
  readonly arch: ArchName;
  readonly base: ReturnType<typeof resultBase>;
  readonly started: number;
  readonly artifactsDir: string;
  readonly opts: RunWhere;
  readonly expectation: Expectation | undefined;
  readonly phaseMs: Record<string, number>;
  /** The phase that gives the session (a guest's boot, a machine's connection), and how. */
  readonly open: readonly [string, () => Promise<G>];
  readonly kernel: KernelUnderTest;
  readonly memoryMiB: number;
  /** Named in the backstop deadline's message. */
  readonly what: string;
  /** A failure of the session's own logs, to report after the run. */
  readonly logError?: (guest: G) => Error | undefined;
}

/**
 * One scenario on one session (a guest of its own, a machine target): the session, the scenario
 * under its backstop deadline, the last dmesg under the watchdog, and the verdict; the session is
 * stopped whatever happens.
 */
async function runSession<G extends GuestSession & RunGuest>(r: SessionRun<G>): Promise<ScenarioResult> {
  const { scenario, base, started, artifactsDir, expectation, phaseMs } = r;
  let guest: G | undefined;
  let ctx: RunContext | undefined;
  try {
    const [phase, open] = r.open;
    const openStart = performance.now();
    guest = await open();
    phaseMs[phase] = Math.round(performance.now() - openStart);
    if (expectation) guest.console.allow(expectation.consoleLines);
    ctx = new RunContext(scenario, r.arch, guest, r.kernel, artifactsDir, r.opts.log, r.memoryMiB);
    await within(scenario.run(ctx), scaled(scenario.deadlineMs ?? SCENARIO_DEADLINE_MS), r.what, guest);
    const logError = r.logError?.(guest);
    if (logError) throw logError;
    // Ends the scenario under the watchdog: a fault printed after the last step fails it too.
    await ctx.artifact(`dmesg-boot${guest.boot}.txt`, await guest.run("dmesg"));
    return finish(
      base,
      ...expect(expectation, ["pass", undefined, []]),
      ctx,
      guest,
      phaseMs,
      started,
      artifactsDir,
    );
  } catch (err) {
    if (isDiskFull(err))
      return diskFullResult(base, await diskFullMessage(err), phaseMs, started, artifactsDir);
    return finish(
      base,
      ...expect(expectation, classify(err, guest)),
      ctx,
      guest,
      phaseMs,
      started,
      artifactsDir,
    );
  } finally {
    await guest?.stop();
  }
}

type Outcome = [ScenarioResult["verdict"], string | undefined, readonly string[]];

/**
 * A planned check left not done for a reason the scenario does not accept (CheckRecord.accepted)
 * turns a pass (or xpass) into a result that names it: a scenario cannot pass without what it
 * planned. A `fail` when the reason is the kernel's doing (KERNEL_NOT_DONE), an `error` when it
 * is the harness's (a late pause, a read that failed).
 */
export function withUndoneChecks(outcome: Outcome, checks: readonly CheckRecord[]): Outcome {
  const [verdict] = outcome;
  const undone = checks.filter((c) => c.status === "not-done" && !c.accepted);
  const first = undone[0];
  if (!first || (verdict !== "pass" && verdict !== "xpass")) return outcome;
  const kernels = undone.some((c) => c.notDone !== undefined && KERNEL_NOT_DONE.includes(c.notDone));
  return [
    kernels ? "fail" : "error",
    `planned check ${first.check} was not done (${first.notDone ?? "?"}: ${first.detail ?? ""})`,
    undone.map((c) => `not done: ${c.check}: ${c.notDone ?? "?"}: ${c.detail ?? ""}`),
  ];
}

/** Applies the scenario's expectation: an expected failure is xfail, a surprise pass is xpass. */
function expect(expectation: Expectation | undefined, [verdict, reason, evidence]: Outcome): Outcome {
  if (!expectation) return [verdict, reason, evidence];
  if (verdict === "fail") return ["xfail", `${expectation.reason} (observed: ${reason ?? "?"})`, evidence];
  if (verdict === "pass") {
    return [
      "xpass",
      `EXPECTED FAILURE DID NOT HAPPEN: the kernel now gets this right; update the scenario's expectation (${expectation.reason})`,
      evidence,
    ];
  }
  return [verdict, reason, evidence];
}

/** A scenario whose artifacts could not be written: the run stops starting guests (runner.ts). */
function diskFullResult(
  base: { id: string; arch: ArchName; attempt?: number },
  message: string,
  phaseMs: Record<string, number>,
  started: number,
  artifactsDir: string,
): ScenarioResult {
  return {
    ...base,
    verdict: "error",
    reason: message,
    evidence: [],
    phaseMs,
    totalMs: Math.round(performance.now() - started),
    diskFull: true,
    artifactsDir,
  };
}

/** What the verdict needs of a session: its console's last lines, its boots' timings, a stop. */
export interface RunGuest {
  readonly console: SessionConsole;
  readonly timings: readonly BootTiming[];
  stop(): Promise<void>;
}

/** The backstop deadline of a whole scenario run (or turn on a shared guest) ran out. */
export class ScenarioDeadline extends HarnessError {}

/**
 * `work`, unless `ms` (already scaled) passes first: then the guest is stopped (every wait inside
 * ends) and the run is a ScenarioDeadline naming the deadline, with the console's last lines.
 */
export async function within<T>(work: Promise<T>, ms: number, what: string, guest: RunGuest): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // Rejected first, so the work's failure when the guest goes cannot win the race.
      reject(
        new ScenarioDeadline(
          `${what} did not finish within ${Math.round(ms / 1000)}s, its whole deadline (scaled by --timeout-factor / ${TIMEOUT_FACTOR_ENV}); the guest was stopped`,
          guest.console.lastLines(15),
        ),
      );
      void guest.stop();
    }, ms);
  });
  // once the deadline has won, the work's own failure (the stopped guest) is no one's to report
  work.catch(() => undefined);
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function classify(err: unknown, guest: RunGuest | undefined): Outcome {
  if (err instanceof Skipped) return ["skip", err.message, []];
  if (err instanceof CheckFailed) return ["fail", err.message, err.evidence];
  if (err instanceof GuestFault) return ["fail", err.message, err.excerpt];
  if (err instanceof SshFailure)
    return ["fail", err.message, [...err.evidence, ...(guest?.console.lastLines(15) ?? [])]];
  if (err instanceof HarnessError) return ["error", err.message, err.evidence];
  const e = err instanceof Error ? err : new Error(String(err));
  return ["error", `harness bug: ${e.message}`, (e.stack ?? "").split("\n").slice(0, 8)];
}

function finish(
  base: { id: string; arch: ArchName; attempt?: number },
  verdict: ScenarioResult["verdict"],
  reason: string | undefined,
  evidence: readonly string[],
  ctx: RunContext | undefined,
  guest: RunGuest | undefined,
  phaseMs: Record<string, number>,
  started: number,
  artifactsDir: string,
): ScenarioResult {
  const notes = ctx?.notes ?? [];
  [verdict, reason, evidence] = withUndoneChecks([verdict, reason, evidence], ctx?.checks ?? []);
  return {
    ...base,
    verdict,
    ...(reason !== undefined
      ? { reason }
      : verdict === "pass" && notes.length
        ? { reason: notes.join("; ") }
        : {}),
    evidence,
    phaseMs: { ...phaseMs, ...(ctx?.phaseMs ?? {}) },
    totalMs: Math.round(performance.now() - started),
    ...(guest?.timings.length ? { boots: [...guest.timings] } : {}),
    ...(ctx?.facts.length ? { facts: [...ctx.facts] } : {}),
    ...(ctx?.checks.length ? { checks: [...ctx.checks] } : {}),
    artifactsDir,
  };
}

/**
 * Runs `scenario` on a machine target (target-run.ts): `open` connects a session to the machine
 * as it runs now, with its artifacts folder; the verdict is made as for a guest. What the target
 * cannot do at all is decided first (machineTargetSkip); checks it cannot do inside a scenario
 * are recorded as not done there (memory/access.ts).
 */
export async function runOnMachine(
  scenario: Scenario,
  target: MachineTarget,
  open: (logDir: string) => Promise<GuestSession & RunGuest>,
  opts: RunWhere,
): Promise<ScenarioResult> {
  const { arch, kernel } = target;
  const started = performance.now();
  const base = resultBase(scenario, arch, undefined);
  const missing = missingCapabilities(scenario, kernel);
  const cannot =
    machineTargetSkip(scenario, target.hasConsole) ??
    (missing.length > 0 ? `the machine's kernel lacks ${missing.join(", ")}` : undefined);
  if (cannot) return { ...base, verdict: "skip", reason: cannot, phaseMs: {}, totalMs: 0 };
  const artifactsDir = runDir(opts, arch, scenario.id, undefined);
  await mkdir(artifactsDir, { recursive: true });
  announce(opts, scenario, arch, undefined);
  return runSession({
    scenario,
    arch,
    base,
    started,
    artifactsDir,
    opts,
    expectation: activeExpectation(scenario, target.features),
    phaseMs: {},
    open: ["connect", () => open(artifactsDir)],
    kernel,
    memoryMiB: target.memoryMiB,
    what: `${scenario.id} on ${target.name}`,
  });
}

/** A machine target as the scenarios see it (target-run.ts). */
export interface MachineTarget {
  /** `root@host:port`. */
  readonly name: string;
  readonly arch: ArchName;
  readonly kernel: KernelUnderTest;
  readonly features: ReadonlySet<KernelFeature>;
  readonly memoryMiB: number;
  readonly hasConsole: boolean;
}

/** Shareable scenarios the runner may group: all capabilities there, no expected failure. */
export function canShare(scenario: Scenario, prepared: PreparedArch): boolean {
  return (
    mayShare(scenario) &&
    missingCapabilities(scenario, prepared.summary.kernel).length === 0 &&
    activeExpectation(scenario, prepared.features) === undefined
  );
}

/**
 * The boot a shared guest gets (members share KHO on or off, see planUnits): every member's
 * kernel parameters, once each, and the most memory any of them asks for.
 */
export function sharedBoot(members: readonly Scenario[]): GuestBoot {
  const [first] = members;
  if (!first) throw new Error("a shared guest needs members");
  const memory = Math.max(...members.map((m) => m.boot.memoryMiB ?? DEFAULT_MEMORY_MIB));
  const params = [...new Set(members.flatMap((m) => m.boot.append?.split(/\s+/).filter(Boolean) ?? []))];
  return {
    kho: first.boot.kho,
    memoryMiB: memory,
    ...(first.boot.numaNodes ? { numaNodes: first.boot.numaNodes } : {}),
    ...(params.length ? { append: params.join(" ") } : {}),
  };
}

/**
 * Runs `members` (all canShare, one KHO setting) on one guest: each takes its turn up to its
 * kexec, one kexec carries them all, then each takes its turn in the new kernel. A member's
 * verdict is its own; a fault of the shared boot, load or kexec fails every member waiting on
 * it, with the same evidence. Each result's phases are its own plus the shared boot; `totalMs`
 * is their sum.
 */
export async function runShared(
  members: readonly Scenario[],
  label: string,
  prepared: PreparedArch,
  opts: RunWhere,
  attempt: number | undefined,
): Promise<ScenarioResult[]> {
  const { arch, kernel } = prepared.summary;
  if (members.length === 0) return [];
  const started = performance.now();
  const logDir = runDir(opts, arch, label, attempt);
  await mkdir(logDir, { recursive: true });
  const dirOf = (s: Scenario) => runDir(opts, arch, s.id, attempt);
  const baseOf = (s: Scenario) => resultBase(s, arch, attempt);
  const consoleDir = relative(opts.outDir, logDir) || ".";
  const boot = sharedBoot(members);
  opts.log(`# ${label}.${arch}: one guest, one kexec for ${members.map((m) => m.id).join(", ")}`);
  let guest: Guest;
  const bootStart = performance.now();
  try {
    guest = await startGuest(prepared, boot, logDir, label, attempt, opts);
  } catch (err) {
    const [verdict, reason, evidence] = classify(err, undefined);
    return members.map((m) => ({
      ...baseOf(m),
      verdict,
      reason: `${reason ?? "?"} (the guest shared by ${members.length} scenarios did not boot)`,
      evidence,
      phaseMs: {},
      totalMs: Math.round(performance.now() - started),
      artifactsDir: logDir,
    }));
  }
  const bootMs = Math.round(performance.now() - bootStart);
  const shared = guest;
  const sharedDeadline = scaled(members.reduce((sum, m) => sum + (m.deadlineMs ?? SCENARIO_DEADLINE_MS), 0));
  const load = async () => void (await shared.run(`kho-agent ${loadNextKernel(shared.nextKernel)}`));
  try {
    return await takeTurns(shared, members.length, load, async (index, member): Promise<ScenarioResult> => {
      const m = members[index];
      if (!m) throw new Error(`no member ${index}`);
      const dir = dirOf(m);
      await mkdir(dir, { recursive: true });
      announce(opts, m, arch, attempt);
      const ctx: RunContext = new RunContext(
        m,
        arch,
        member((ms) => ctx.waited(ms)),
        kernel,
        dir,
        opts.log,
        boot.memoryMiB ?? DEFAULT_MEMORY_MIB,
      );
      let outcome: Outcome;
      try {
        // a member's turn waits on the others: the backstop is all of theirs together
        await within(m.run(ctx), sharedDeadline, `${m.id} on ${arch} (shared guest)`, shared);
        await ctx.artifact(`dmesg-boot${shared.boot}.txt`, await shared.run("dmesg"));
        outcome = ["pass", undefined, []];
      } catch (err) {
        if (isDiskFull(err))
          return diskFullResult(baseOf(m), await diskFullMessage(err), { boot: bootMs }, started, dir);
        outcome = classify(err, shared);
      }
      ctx.note(`on a guest shared with ${members.length - 1} other scenarios (console: ${consoleDir})`);
      const r = finish(baseOf(m), ...outcome, ctx, shared, { boot: bootMs }, started, dir);
      return { ...r, totalMs: Object.values(r.phaseMs).reduce((a, b) => a + b, 0) };
    });
  } finally {
    await shared.stop();
    await linkGuestLogs(logDir, members.map(dirOf));
  }
}

const GUEST_LOGS = /^(console\.log|boot-\d+\.log|qemu\.cmd|qemu-stderr\.log)$/;

/** Each member's folder gets the shared guest's logs as relative links, as if it had its own. */
async function linkGuestLogs(logDir: string, memberDirs: readonly string[]): Promise<void> {
  const logs = (await readdir(logDir).catch(() => [])).filter((f) => GUEST_LOGS.test(f));
  for (const dir of memberDirs) {
    for (const f of logs) await symlink(relative(dir, join(logDir, f)), join(dir, f)).catch(() => undefined);
  }
}
