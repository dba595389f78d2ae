// Where a boot's wall time goes, from the console's host timestamps: QEMU start (or the kexec
// trigger) to SSH up, cut at the landmarks every kernel and our init print. The numbers say
// which part to make faster (firmware, the old kernel's shutdown, kernel boot, init, SSH).
import type { ConsoleLine } from "../vm/console.js";

export interface BootSegment {
  readonly name: string;
  readonly ms: number;
}

/** One boot of a guest: the first (QEMU start to SSH up) or one reached by kexec. */
export interface BootTiming {
  readonly boot: number;
  readonly via: "boot" | "kexec";
  readonly totalMs: number;
  readonly segments: readonly BootSegment[];
}

interface Landmark {
  /** The segment that ends at this line. */
  readonly name: string;
  readonly re: RegExp;
}

const KERNEL_AND_INIT: readonly Landmark[] = [
  { name: "kernel", re: /Run \/init as init process/ },
  { name: "init", re: /KHO-GUEST: ready boot_id=/ },
];
/** QEMU start: firmware, loading and decompressing the kernel, up to its banner. */
const FIRST_BOOT: readonly Landmark[] = [{ name: "firmware", re: /Linux version \d/ }, ...KERNEL_AND_INIT];
/** Kexec trigger: the old kernel shuts down; purgatory and decompression run silently. */
const KEXEC: readonly Landmark[] = [
  { name: "shutdown", re: /kexec_core: Starting new kernel/ },
  { name: "handover", re: /Linux version \d/ },
  ...KERNEL_AND_INIT,
];

/** Every segment name, in the order they happen (table columns). */
export const SEGMENT_NAMES: readonly string[] = ["firmware", "shutdown", "handover", "kernel", "init", "ssh"];

/**
 * Splits `started`..`ended` (host ms) at the landmarks found in `lines` (the console since the
 * start), in order; a landmark that never appeared folds its time into the next segment, and
 * what follows the last one is `ssh` (connecting and the first command).
 */
export function bootTimeline(
  lines: readonly ConsoleLine[],
  started: number,
  ended: number,
  kind: "boot" | "kexec",
): BootSegment[] {
  const segments: BootSegment[] = [];
  let from = started;
  let seq = -1;
  for (const mark of kind === "boot" ? FIRST_BOOT : KEXEC) {
    const line = lines.find((l) => l.seq > seq && l.at >= from && mark.re.test(l.text));
    if (!line) continue;
    segments.push({ name: mark.name, ms: line.at - from });
    from = line.at;
    seq = line.seq;
  }
  segments.push({ name: "ssh", ms: Math.max(0, ended - from) });
  return segments;
}

/** "11.7 s (shutdown 0.3, handover 1.2, kernel 4.9, init 2.1, ssh 0.6)" */
export function formatTimeline(segments: readonly BootSegment[]): string {
  const total = segments.reduce((sum, s) => sum + s.ms, 0);
  const s = (ms: number) => (ms / 1000).toFixed(1);
  return `${s(total)} s (${segments.map((x) => `${x.name} ${s(x.ms)}`).join(", ")})`;
}
