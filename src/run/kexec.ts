// The plain kexec step most scenarios share: the guest agent loads the next kernel with
// kexec_file_load (so KHO data travels), prints its JSON line, and reboots into it.
import { isAgentError } from "../guest/agent-protocol.js";
import { agentFailure, parseAgentLine, type ScenarioContext } from "./context.js";

export async function kexecWithAgent(ctx: ScenarioContext, step = "kexec"): Promise<void> {
  const { blackoutMs } = await ctx.phase(step, () =>
    ctx.guest.kexec(async () => {
      const stream = await ctx.guest.stream(
        "kho-agent kexec --kernel /boot/next-kernel --initrd /boot/next-initrd --reuse-cmdline",
      );
      const load = parseAgentLine<{ ok: boolean }>(
        await stream.readLine(60_000),
        "kho-agent kexec",
        stream.stderr(),
      );
      if (isAgentError(load)) throw agentFailure(load);
    }, step),
  );
  ctx.note(`${step} blackout ${Math.round(blackoutMs)} ms`);
}
