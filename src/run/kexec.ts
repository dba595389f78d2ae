// The plain kexec step most scenarios share: the guest agent loads the next kernel with
// kexec_file_load (so KHO data travels) and reports the load; then it reboots into it. Two
// calls, because the reboot can cut the SSH channel before a combined call's report arrives.
import { formatTimeline } from "./boot-timeline.js";
import type { ScenarioContext } from "./context.js";

const KEXEC = "kho-agent kexec --kernel /boot/next-kernel --initrd /boot/next-initrd --reuse-cmdline";

export async function kexecWithAgent(ctx: ScenarioContext, step = "kexec"): Promise<void> {
  await ctx.phase(`${step} load`, () => ctx.agent(`${KEXEC.replace("kho-agent ", "")} --load-only`));
  const blackout = await ctx.phase(step, () =>
    ctx.guest.kexec(async () => {
      // Fire and forget: the channel dies with the old kernel; the console says what happened.
      await ctx.guest.stream(KEXEC);
    }, step),
  );
  ctx.note(`${step} blackout ${formatTimeline(blackout.segments)}`);
}
