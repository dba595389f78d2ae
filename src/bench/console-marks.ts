// Guest-side instants read from a serial console: the printk timestamp of marker lines, per
// boot. They show where a boot spends its time independently of the host's clock and load.

/** A kernel banner starts a boot (the console's own rule, see src/vm/console.ts). */
const BANNER = /(?:^|\[\s*\d+\.\d+\]\s*)(?:\[[^\]]*\]\s*)*Linux version \d/;
// Anywhere on the line: a shell prompt on the console can precede the kernel's message.
const PRINTK_TIME = /\[\s*(\d+)\.(\d+)\]/;

export const GUEST_MARKERS: Readonly<Record<string, RegExp>> = {
  "initramfs unpacked": /Freeing initrd memory/,
  "run init": /Run \/init as init process/,
  "kexec start": /kexec_core: Starting new kernel/,
  "kho restore": /KHO restore succeeded/,
};

/**
 * `boot<N> <marker>` -> the printk time of its first line in that boot, in ms since that
 * kernel started. Lines without a printk timestamp (userspace echoes) are skipped.
 */
export function guestMarks(
  lines: Iterable<string>,
  markers: Readonly<Record<string, RegExp>> = GUEST_MARKERS,
): Record<string, number> {
  const out: Record<string, number> = {};
  let boot = 0;
  for (const line of lines) {
    if (BANNER.test(line)) boot += 1;
    const t = PRINTK_TIME.exec(line);
    if (!t || boot === 0) continue;
    const ms = Number(t[1]) * 1000 + Number(`0.${t[2]}`) * 1000;
    for (const [name, re] of Object.entries(markers)) {
      const key = `boot${boot} ${name}`;
      if (out[key] === undefined && re.test(line)) out[key] = Math.round(ms);
    }
  }
  return out;
}
