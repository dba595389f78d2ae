// What a scenario is: an id, a one-line description, the kernel capabilities it needs, how
// its guest boots, and its steps. Nothing else: expectations live in expectations.ts, the
// machinery (boot, SSH, kexec, checks, artifacts) in src/run/.
import type { ScenarioContext } from "../orchestrate/context.js";

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

export interface GuestBoot {
  /** false boots with kho=off and without liveupdate=on. */
  readonly kho: boolean;
  /** Extra kernel parameters. */
  readonly append?: string;
  readonly memoryMiB?: number;
}

export interface Scenario {
  readonly id: string;
  readonly description: string;
  readonly needs: readonly Capability[];
  readonly boot: GuestBoot;
  /**
   * May run on one guest with other shareable scenarios of the same boot, all through one
   * kexec (src/run/shared-guest.ts): it starts in the first boot, kexecs through
   * `ctx.guest.kexec` (more than once only after the others are done), lets the guest load the
   * next kernel where `ctx.guest.loadsAtKexec` says so, uses its own session names, and
   * nothing it checks can be disturbed by other sessions or preserved memory in the guest.
   * Its `append` may only add (reserve memory, start a facility): a shared guest boots with
   * every member's parameters.
   */
  readonly shareable?: boolean;
  run(ctx: ScenarioContext): Promise<void>;
}
