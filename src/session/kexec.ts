// What the guest kexecs into, and the agent command that loads it (scenarios/kexec-step.ts runs
// the plain kexec step; a shared guest's rendezvous loads once for all members).

/**
 * The kernel from the harness's /boot disk, and the initrd it booted with, kept by the kernel
 * (retain_initrd, see Guest.start) and read back from sysfs, so the load copies it from memory
 * instead of from a disk written per run.
 */
export const NEXT_KERNEL = { kernel: "/boot/next-kernel", initrd: "/sys/firmware/initrd" } as const;
/** The agent command that loads the next kernel for a KHO kexec. */
export const LOAD_NEXT_KERNEL = `kexec --kernel ${NEXT_KERNEL.kernel} --initrd ${NEXT_KERNEL.initrd} --reuse-cmdline --load-only`;
/** The agent's console mark just before reboot(LINUX_REBOOT_CMD_KEXEC) (guest/agent/kexec.c). */
export const REBOOT_MARK = /kho-agent: reboot\(KEXEC\)/;
