// The plain kexec step most scenarios share: the guest agent loads the next kernel with
// kexec_file_load (so KHO data travels) and reports the load; then it reboots into the loaded
// kernel. Two calls, because the reboot can cut the SSH channel before a combined call's report
// arrives; the second does not load again (that would read and hash both images twice). On a
// shared guest the rendezvous loads once for all members, right before its kexec.
import { formatTimeline } from "./boot-timeline.js";
import type { ScenarioContext } from "../orchestrate/context.js";

/**
 * What the guest kexecs into: the kernel from the harness's /boot disk, and the initrd it booted
 * with, kept by the kernel (retain_initrd, see Guest.start) and read back from sysfs, so the
 * load copies it from memory instead of from a disk written per run.
 */
export const NEXT_KERNEL = { kernel: "/boot/next-kernel", initrd: "/sys/firmware/initrd" } as const;
/** The agent command that loads the next kernel for a KHO kexec. */
export const LOAD_NEXT_KERNEL = `kexec --kernel ${NEXT_KERNEL.kernel} --initrd ${NEXT_KERNEL.initrd} --reuse-cmdline --load-only`;
const REBOOT = "kho-agent kexec --loaded";

export async function kexecWithAgent(ctx: ScenarioContext, step = "kexec"): Promise<void> {
  if (!ctx.guest.loadsAtKexec) await ctx.phase(`${step} load`, () => ctx.agent(LOAD_NEXT_KERNEL));
  const blackout = await ctx.phase(step, () =>
    ctx.guest.kexec(async () => {
      // Fire and forget: the channel dies with the old kernel; the console says what happened.
      await ctx.guest.stream(REBOOT);
    }, step),
  );
  ctx.note(`${step} blackout ${formatTimeline(blackout.segments)}`);
}
