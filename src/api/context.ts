// What a scenario's steps get: the guest session, the kernel under test, timed phases, checks
// that fail with evidence, skips, notes with typed facts, artifacts, and the guest agent with
// its JSON validated. The runner implements it (src/orchestrate/context.ts).
import type { z } from "zod";
import type { ArchName } from "../arch.js";
import type { CachedKernel } from "../kernel/cache.js";
import type { ConfigMap } from "../kernel/config.js";
import type { KernelFeature } from "../kernel/features.js";
import type { AgentError } from "../agent/protocol.js";
import type { GuestSession } from "../session/session.js";
import type { Logger } from "../util/log.js";
import type { Fact } from "./facts.js";
import type { Finding, NotDoneReason } from "./findings.js";

/** A scenario's parameters by name (Scenario.params, set with withParams). */
export type ScenarioParams = Readonly<Record<string, number | string | boolean>>;

export interface KernelUnderTest {
  readonly image: string;
  readonly release: string;
  readonly config: ConfigMap;
  /** The kernel that the guest kexecs into (the same image unless --next-kernel or a variant). */
  readonly nextImage: string;
  /** The next kernel's config, when it is not the booted kernel's (a --next-kernel, a variant). */
  readonly nextConfig?: ConfigMap;
  /** The harness's build of the next kernel, when it is a variant (modules for it build here). */
  readonly nextBuilt?: CachedKernel;
  /** The harness's build of it (source tree, headers), when the harness built it. */
  readonly built: CachedKernel | undefined;
  /** What its source tree has (empty for a prebuilt --kernel: nothing is known). */
  readonly features: ReadonlySet<KernelFeature>;
}

/** How to call the agent: where its JSON goes and how long it may take. */
export interface AgentCall {
  readonly artifact?: string;
  readonly deadlineMs?: number;
}

export interface ScenarioContext {
  readonly arch: ArchName;
  readonly guest: GuestSession;
  readonly kernel: KernelUnderTest;
  readonly artifactsDir: string;
  readonly log: Logger;
  readonly memoryMiB: number;
  /** The scenario's parameters (its declared defaults, as set by withParams). */
  readonly params: ScenarioParams;
  /** Times `fn` as the named phase (summed when a phase runs more than once). */
  phase<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** Fails the scenario with `message` and `evidence` unless `condition` holds. */
  check(condition: boolean, message: string, evidence?: readonly string[]): void;
  /** Records every finding as a check; fails the scenario at the first one not ok. */
  expect(findings: readonly Finding[]): void;
  /** Records that the planned `check` was not done, and why (see Scenario.acceptNotDone). */
  notDone(check: string, reason: NotDoneReason, detail: string): void;
  skip(reason: string): never;
  /** A line for the report, with the typed fact it states when there is one. */
  note(line: string, fact?: Fact): void;
  /** A typed fact without a line of its own. */
  fact(fact: Fact): void;
  artifact(name: string, data: string | Uint8Array): Promise<string>;
  /** Runs kho-agent in the guest and returns its JSON, checked against `schema`; an agent
   *  error fails the scenario. */
  agent<S extends z.ZodType>(args: string, schema: S, call?: AgentCall): Promise<z.infer<S>>;
  /** As `agent`, but an agent error is returned (for errors the kernel must give). */
  agentOutcome<S extends z.ZodType>(
    args: string,
    schema: S,
    call?: AgentCall,
  ): Promise<z.infer<S> | AgentError>;
  /** A line the agent printed on a stream (the held agent), checked against `schema`; a line
   *  that is not JSON fails the scenario with `stderr` as evidence. */
  parseAgent<S extends z.ZodType>(
    schema: S,
    line: string,
    command: string,
    stderr?: string,
  ): z.infer<S> | AgentError;
}
