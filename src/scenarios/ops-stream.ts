// A `kho-agent ops` stream in the guest (guest/agent/ops.c): lines of ops in, one validated JSON
// answer per line out, and the kexec step through the same stream (the process holding the
// sessions is the one that reboots). One stream per kernel: a kexec ends it.
import { AgentOkSchema } from "../agent/protocol.js";
import type { ScenarioContext } from "../api/context.js";
import { CheckFailed } from "../api/outcome.js";
import { loadNextKernel } from "../session/kexec.js";
import { OpResultSchema, type OpResult } from "../uapi/ops.js";
import { scaled } from "../util/deadline.js";
import type { ExecStream } from "../vm/ssh.js";
import { kexecHeld } from "./memfd-common.js";

const LINE_DEADLINE_MS = 30_000;

export class OpsStream {
  private stream: ExecStream | undefined;
  constructor(private readonly ctx: ScenarioContext) {}

  /** Sends the lines at once and reads one answer per line (each within `deadlineMs`). */
  async batch(lines: readonly string[], deadlineMs = LINE_DEADLINE_MS): Promise<OpResult[]> {
    if (lines.length === 0) return [];
    this.stream ??= await this.ctx.guest.stream("kho-agent ops");
    const s = this.stream;
    for (const l of lines) s.writeLine(l);
    const out: OpResult[] = [];
    for (const l of lines) {
      const raw = await s.readLine(scaled(deadlineMs));
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        json = undefined;
      }
      const r = OpResultSchema.safeParse(json);
      if (!r.success)
        throw new CheckFailed(`kho-agent ops answered "${l}" with a line the protocol does not allow`, [
          raw,
          ...s.stderr().trimEnd().split("\n").slice(-5),
        ]);
      out.push(r.data);
    }
    return out;
  }

  /** One op that must succeed; its answer. */
  async must(line: string, deadlineMs?: number): Promise<OpResult> {
    const [r] = await this.batch([line], deadlineMs);
    if (!r?.ok)
      throw new CheckFailed(`"${line}" failed in the guest: ${r?.errname ?? r?.bad_line ?? "no answer"}`, [
        JSON.stringify(r),
      ]);
    return r;
  }

  /** Loads the next kernel and kexecs through this stream: `trigger` is the line that reboots. */
  async kexec(trigger = "kexec"): Promise<void> {
    const stream = this.stream ?? (await this.ctx.guest.stream("kho-agent ops"));
    if (!this.ctx.guest.kexecLoadsNextKernel)
      await this.ctx.agent(loadNextKernel(this.ctx.guest.nextKernel), AgentOkSchema);
    this.stream = undefined;
    await kexecHeld(this.ctx, stream, "kexec", trigger);
  }

  close(): void {
    this.stream?.close();
    this.stream = undefined;
  }
}
