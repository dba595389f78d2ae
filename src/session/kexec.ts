// What the guest kexecs into, and the agent command that loads it (scenarios/kexec-step.ts runs
// the plain kexec step; a shared guest's rendezvous loads once for all members).
import type { NextKernelFiles } from "./session.js";

/**
 * The kernel from the harness's /boot disk, and the initrd it booted with, kept by the kernel
 * (retain_initrd, see Guest.start) and read back from sysfs, so the load copies it from memory
 * instead of from a disk written per run.
 */
export const NEXT_KERNEL: NextKernelFiles = { kernel: "/boot/next-kernel", initrd: "/sys/firmware/initrd" };
/** Where scenarios upload their files on a guest the harness started (GuestSession.workDir). */
export const GUEST_WORK_DIR = "/root";
/** The agent command that loads the next kernel for a KHO kexec. */
export function loadNextKernel(files: NextKernelFiles): string {
  return `kexec --kernel ${files.kernel} --initrd ${files.initrd} --reuse-cmdline --load-only`;
}
/** The agent's preserve/restore options that load the next kernel as they hold their sessions. */
export function loadOptions(files: NextKernelFiles): string {
  return `--kexec-kernel ${files.kernel} --kexec-initrd ${files.initrd} --reuse-cmdline`;
}
/** The agent command that reboots into the kernel loaded before (no second load). */
export const REBOOT_LOADED = "kho-agent kexec --loaded";
/** The agent's console mark just before reboot(LINUX_REBOOT_CMD_KEXEC) (guest/agent/kexec.c). */
export const REBOOT_MARK = /kho-agent: reboot\(KEXEC\)/;
