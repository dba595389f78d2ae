// What a scenario's steps get: the guest, timed phases, checks that fail with evidence, skips,
// artifacts, and the guest agent with its JSON parsed.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import { isAgentError, type AgentError } from "../agent/protocol.js";
import type { CachedKernel } from "../kernel/cache.js";
import type { ConfigMap } from "../kernel/config.js";
import type { Logger } from "../util/log.js";
import type { Guest } from "../session/guest.js";
import { CheckFailed, Skipped } from "../api/outcome.js";

export interface KernelUnderTest {
  readonly image: string;
  readonly release: string;
  readonly config: ConfigMap;
  /** The kernel that the guest kexecs into (the same image unless --next-kernel). */
  readonly nextImage: string;
  /** The harness's build of it (source tree, headers), when the harness built it. */
  readonly built: CachedKernel | undefined;
}

export class ScenarioContext {
  readonly phaseMs: Record<string, number> = {};
  /** Facts worth a line in the report (frames compared, ranges decoded...). */
  readonly notes: string[] = [];

  constructor(
    readonly arch: ArchName,
    readonly guest: Guest,
    readonly kernel: KernelUnderTest,
    readonly artifactsDir: string,
    readonly log: Logger,
    readonly memoryMiB: number,
  ) {}

  /** Time spent waiting for other scenarios on a shared guest: kept out of the phases. */
  private waitedMs = 0;

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

  /** Records time the scenario spent waiting on others (see shared-guest.ts). */
  waited(ms: number): void {
    this.waitedMs += ms;
  }

  check(condition: boolean, message: string, evidence: readonly string[] = []): void {
    if (!condition) throw new CheckFailed(message, evidence);
  }

  skip(reason: string): never {
    throw new Skipped(reason);
  }

  note(line: string): void {
    this.notes.push(line);
  }

  async artifact(name: string, data: string | Uint8Array): Promise<string> {
    await mkdir(this.artifactsDir, { recursive: true });
    const path = join(this.artifactsDir, name);
    await writeFile(path, data);
    return path;
  }

  /** Runs kho-agent in the guest and returns its JSON; an agent error fails the scenario. */
  async agent<T extends { ok: boolean }>(
    args: string,
    artifactName?: string,
    deadlineMs?: number,
  ): Promise<T> {
    const json = await this.agentOutcome<T>(args, artifactName, deadlineMs);
    if (isAgentError(json)) throw agentFailure(json);
    return json;
  }

  /** Runs kho-agent in the guest and returns its JSON, an error object included (for expected errors). */
  async agentOutcome<T extends { ok: boolean }>(
    args: string,
    artifactName?: string,
    deadlineMs?: number,
  ): Promise<T | AgentError> {
    const r = await this.guest.exec(`kho-agent ${args}`, deadlineMs);
    const json = parseAgentLine<T | AgentError>(r.stdout, `kho-agent ${args}`, r.stderr);
    if (artifactName) await this.artifact(artifactName, JSON.stringify(json, null, 2) + "\n");
    return json;
  }
}

export function parseAgentLine<T>(line: string, command: string, stderr = ""): T {
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new CheckFailed(`${command} did not print JSON`, [
      ...line.trimEnd().split("\n").slice(-5),
      ...stderr.trimEnd().split("\n").slice(-10),
    ]);
  }
}

export function agentFailure(e: AgentError): CheckFailed {
  return new CheckFailed(`kho-agent ${e.command} failed at ${e.step}: ${e.error} (${e.errname ?? e.errno})`, [
    JSON.stringify(e),
  ]);
}
