// What a scenario is, in one declaration: an id, a one-line description, the kernel
// capabilities it needs, how its guest boots, whether it may share a guest, what the kernel is
// expected to get wrong, which not-done checks it accepts, and its steps. The machinery that
// runs it (src/orchestrate) depends on this file; this file depends on nothing of it.
import type { KernelFeature } from "../kernel/features.js";
import type { KernelVariantName } from "../kernel/variants.js";
import type { GuestBoot } from "../session/session.js";
import type { ScenarioContext, ScenarioParams } from "./context.js";

export type { ScenarioParams } from "./context.js";
import type { NotDoneReason } from "./findings.js";

export type { GuestBoot } from "../session/session.js";

/** Kernel capabilities a scenario can need, each answered by a config option of the kernel. */
export const CAPABILITIES = {
  kho: "KEXEC_HANDOVER",
  "kho-debugfs": "KEXEC_HANDOVER_DEBUGFS",
  luo: "LIVEUPDATE",
  "luo-memfd": "LIVEUPDATE_MEMFD",
  "test-kho": "TEST_KEXEC_HANDOVER",
  hugetlbfs: "HUGETLBFS",
  tracing: "TRACING",
} as const;
export type Capability = keyof typeof CAPABILITIES;

export type { KernelFeature } from "../kernel/features.js";

/**
 * What the kernel is expected to get wrong: while it lacks `unless`, the scenario's failure is an
 * expected failure (xfail) with the reason; if it passes anyway, the result is xpass, reported
 * loudly so the declaration gets updated.
 */
export interface Expectation {
  readonly unless: KernelFeature;
  readonly reason: string;
  /** Console lines the expected failure prints (not faults for the watchdog). */
  readonly consoleLines: readonly RegExp[];
}

/** A scenario's whole deadline unless it declares one: ten times what the longest takes here. */
export const SCENARIO_DEADLINE_MS = 10 * 60_000;

export interface Scenario {
  readonly id: string;
  readonly description: string;
  readonly needs: readonly Capability[];
  readonly boot: GuestBoot;
  /**
   * May run on one guest with other shareable scenarios of the same boot, all through one
   * kexec (src/session/shared.ts): it starts in the first boot, kexecs through
   * `ctx.guest.kexec` (more than once only after the others are done), loads the next kernel
   * only where `ctx.guest.kexecLoadsNextKernel` is false, uses its own session names, and
   * nothing it checks can be disturbed by other sessions or preserved memory in the guest.
   * Its `append` may only add (reserve memory, start a facility): a shared guest boots with
   * every member's parameters.
   */
  readonly shareable?: boolean;
  readonly expectation?: Expectation;
  /** Reasons for which a planned check may stay not done without failing the scenario. */
  readonly acceptNotDone?: readonly NotDoneReason[];
  /** Parameters with their defaults (the chain's length...): `ctx.params`; `withParams` sets them. */
  readonly params?: ScenarioParams;
  /**
   * The kernel the guest kexecs into, when it is not the booted one: a variant of the harness's
   * own recipe (src/kernel/variants.ts), built from the same source. Such a scenario gets a guest
   * of its own.
   */
  readonly nextKernel?: KernelVariantName;
  /**
   * The whole run's deadline (steps, kexecs, checks; the boot has its own), before the timeout
   * factor; default SCENARIO_DEADLINE_MS. A backstop: every wait inside has a deadline of its own.
   */
  readonly deadlineMs?: number;
  /**
   * Why the scenario needs a guest the harness starts (it reads or pauses guest memory through
   * QEMU throughout): it is skipped on a machine target with this reason. Boots that only a
   * harness-started guest gives (memory size, NUMA, KHO off, parameters) need no declaration:
   * `machineTargetSkip` reads them from `boot`.
   */
  readonly needsQemu?: string;
  /** Its checks read the kernel's console: on a machine target it needs --console-cmd. */
  readonly needsConsole?: boolean;
  run(ctx: ScenarioContext): Promise<void>;
}

/** Why `scenario` cannot run on a machine target (kho run --target), or undefined if it can. */
export function machineTargetSkip(scenario: Scenario, hasConsole: boolean): string | undefined {
  const b = scenario.boot;
  if (scenario.needsQemu) return `needs a guest the harness starts: ${scenario.needsQemu}`;
  if (scenario.needsConsole && !hasConsole)
    return "reads the kernel's console: give the machine's with --console-cmd";
  if (!b.kho) return "boots with KHO off: a machine target runs the kernel it was booted with";
  if (b.numaNodes !== undefined) return `needs a guest with ${b.numaNodes} NUMA nodes`;
  if (b.memoryMiB !== undefined) return `needs a guest of ${b.memoryMiB} MiB`;
  if (b.append)
    return `boots with \`${b.append}\`: a machine target runs the command line it was booted with`;
  if (b.earlyConsole) return "needs the early console of a guest the harness starts";
  if (scenario.nextKernel)
    return `kexecs into the harness's ${scenario.nextKernel} kernel variant, which a machine target does not get`;
  return undefined;
}

/**
 * The scenario with some of its declared parameters set; an unknown name or a value of another
 * type than the default's is refused (the message names the scenario's parameters).
 */
export function withParams(scenario: Scenario, values: ScenarioParams): Scenario {
  const declared = scenario.params ?? {};
  for (const [name, value] of Object.entries(values)) {
    if (!(name in declared)) {
      const known = Object.keys(declared).join(", ") || "none";
      throw new TypeError(`${scenario.id} has no parameter "${name}" (it has: ${known})`);
    }
    if (typeof value !== typeof declared[name]) {
      throw new TypeError(
        `${scenario.id}'s parameter "${name}" is a ${typeof declared[name]}, not ${JSON.stringify(value)}`,
      );
    }
  }
  return { ...scenario, params: { ...declared, ...values } };
}

/** The expectation that holds for a kernel with `features`, if any. */
export function activeExpectation(
  scenario: Scenario,
  features: ReadonlySet<KernelFeature>,
): Expectation | undefined {
  const e = scenario.expectation;
  return e && !features.has(e.unless) ? e : undefined;
}
