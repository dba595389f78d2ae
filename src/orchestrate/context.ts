// The runner's ScenarioContext (src/api/context.ts): timed phases, checks and findings recorded
// for the report, planned checks not done, skips, notes with typed facts, artifacts, and the
// guest agent with its JSON checked against the command's schema.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { z } from "zod";
import type { ArchName } from "../arch.js";
import { AgentOutputError, agentErrorText, parseAgentLine } from "../agent/client.js";
import { isAgentError, type AgentError } from "../agent/protocol.js";
import type { AgentCall, KernelUnderTest, ScenarioContext } from "../api/context.js";
import type { Fact } from "../api/facts.js";
import type { CheckRecord, Finding, NotDoneReason } from "../api/findings.js";
import { CheckFailed, Skipped } from "../api/outcome.js";
import type { Scenario, ScenarioParams } from "../api/scenario.js";
import type { GuestSession } from "../session/session.js";
import type { Logger } from "../util/log.js";

export type { KernelUnderTest } from "../api/context.js";

export class RunContext implements ScenarioContext {
  readonly phaseMs: Record<string, number> = {};
  /** Lines for the report (frames compared, ranges decoded...). */
  readonly notes: string[] = [];
  readonly facts: Fact[] = [];
  readonly checks: CheckRecord[] = [];
  readonly params: ScenarioParams;
  /** Time spent waiting for other scenarios on a shared guest: kept out of the phases. */
  private waitedMs = 0;

  constructor(
    private readonly scenario: Pick<Scenario, "params" | "acceptNotDone">,
    readonly arch: ArchName,
    readonly guest: GuestSession,
    readonly kernel: KernelUnderTest,
    readonly artifactsDir: string,
    readonly log: Logger,
    readonly memoryMiB: number,
  ) {
    this.params = scenario.params ?? {};
  }

  async phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    const waitedBefore = this.waitedMs;
    try {
      return await fn();
    } finally {
      const own = performance.now() - start - (this.waitedMs - waitedBefore);
      this.phaseMs[name] = Math.round((this.phaseMs[name] ?? 0) + own);
    }
  }

  /** Records time the scenario spent waiting on others (see session/shared.ts). */
  waited(ms: number): void {
    this.waitedMs += ms;
  }

  check(condition: boolean, message: string, evidence: readonly string[] = []): void {
    if (!condition) throw new CheckFailed(message, evidence);
  }

  /** One record per check id: failed with the first failure's message when any finding of
   *  that id failed (a check walks every memfd; the report keeps one line per check). */
  expect(findings: readonly Finding[]): void {
    for (const f of findings) {
      const i = this.checks.findIndex((c) => c.check === f.check);
      const record: CheckRecord = f.ok
        ? { check: f.check, status: "passed" }
        : { check: f.check, status: "failed", detail: f.message };
      if (i < 0) this.checks.push(record);
      else if (this.checks[i]?.status === "passed" && !f.ok) this.checks[i] = record;
    }
    const failed = findings.find((f) => !f.ok);
    if (failed) throw new CheckFailed(failed.message, failed.evidence ?? []);
  }

  notDone(check: string, reason: NotDoneReason, detail: string): void {
    // What a machine target cannot do is the target's limit, not the run's failure.
    const accepted = reason === "not-on-target" || (this.scenario.acceptNotDone?.includes(reason) ?? false);
    this.checks.push({ check, status: "not-done", detail, notDone: reason, accepted });
  }

  skip(reason: string): never {
    throw new Skipped(reason);
  }

  note(line: string, fact?: Fact): void {
    this.notes.push(line);
    if (fact) this.facts.push(fact);
  }

  fact(fact: Fact): void {
    this.facts.push(fact);
  }

  async artifact(name: string, data: string | Uint8Array): Promise<string> {
    await mkdir(this.artifactsDir, { recursive: true });
    const path = join(this.artifactsDir, name);
    // a failed write names no path of its own: the disk-full sentence needs it
    await writeFile(path, data).catch((e: unknown) => {
      throw Object.assign(e instanceof Error ? e : new Error(String(e)), { path });
    });
    return path;
  }

  async agent<S extends z.ZodType>(args: string, schema: S, call?: AgentCall): Promise<z.infer<S>> {
    const json = await this.agentOutcome(args, schema, call);
    if (isAgentErrorValue(json)) throw new CheckFailed(agentErrorText(json), [JSON.stringify(json)]);
    return json;
  }

  async agentOutcome<S extends z.ZodType>(
    args: string,
    schema: S,
    call: AgentCall = {},
  ): Promise<z.infer<S> | AgentError> {
    const r = await this.guest.exec(`kho-agent ${args}`, call.deadlineMs);
    const json = this.parseAgent(schema, r.stdout, `kho-agent ${args}`, r.stderr);
    // The artifact keeps every field the agent printed, not only those the schema names.
    if (call.artifact)
      await this.artifact(call.artifact, JSON.stringify(JSON.parse(r.stdout), null, 2) + "\n");
    return json;
  }

  parseAgent<S extends z.ZodType>(
    schema: S,
    line: string,
    command: string,
    stderr = "",
  ): z.infer<S> | AgentError {
    try {
      return parseAgentLine(schema, line, command, stderr);
    } catch (err) {
      if (err instanceof AgentOutputError) throw new CheckFailed(err.message, err.evidence);
      throw err;
    }
  }
}

function isAgentErrorValue(v: unknown): v is AgentError {
  return typeof v === "object" && v !== null && isAgentError(v as { ok: boolean });
}
