// The plain kexec step most scenarios share: the guest agent loads the next kernel with
// kexec_file_load (so KHO data travels) and reports the load; then it reboots into the loaded
// kernel. Two calls, because the reboot can cut the SSH channel before a combined call's report
// arrives; the second does not load again (that would read and hash both images twice). On a
// shared guest the rendezvous loads once for all members (kexecLoadsNextKernel).
import { AgentOkSchema } from "../agent/protocol.js";
import type { ScenarioContext } from "../api/context.js";
import { formatTimeline, type BootTiming } from "../session/boot-timeline.js";
import { loadNextKernel, REBOOT_LOADED, REBOOT_MARK } from "../session/kexec.js";

/** Returns the blackout (the trigger to SSH in the new kernel), as noted. */
export async function kexecWithAgent(ctx: ScenarioContext, step = "kexec"): Promise<BootTiming> {
  if (!ctx.guest.kexecLoadsNextKernel)
    await ctx.phase(`${step} load`, () => ctx.agent(loadNextKernel(ctx.guest.nextKernel), AgentOkSchema));
  const blackout = await ctx.phase(step, () => {
    const since = ctx.guest.console.mark();
    let refuse: (err: unknown) => void = () => undefined;
    const refused = new Promise<never>((_, reject) => (refuse = reject));
    refused.catch(() => undefined);
    return ctx.guest.kexec(
      () => {
        // Fire and forget: the channel dies with the old kernel; the console says what happened.
        // Not even the exec's reply is waited for: with the guest's TX queue full of other
        // traffic the reboot can come before dropbear's reply leaves, and ssh2 then says "Unable
        // to exec" when the link times out, although the command ran (kexec-traffic, about 1 run
        // in 100). So the command did not start only if the agent never printed its reboot mark.
        ctx.guest.stream(REBOOT_LOADED).catch((err: unknown) => {
          if (!ctx.guest.console.entriesSince(since).some((l) => REBOOT_MARK.test(l.text))) refuse(err);
        });
        return Promise.resolve();
      },
      step,
      refused,
    );
  });
  ctx.note(`${step} blackout ${formatTimeline(blackout.segments)}`, {
    kind: "blackout",
    step,
    totalMs: blackout.totalMs,
  });
  return blackout;
}
