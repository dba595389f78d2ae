// The phases of one handover, cut from the serial console of a kexec: the old kernel's printk
// times for its shutdown, then the new kernel's landmark lines on the host's clock. Pure, so the
// cutting is unit-tested on recorded consoles (test/unit/bench-handover-phases.test.ts).
//
// Clocks. The old kernel's shutdown is timed by its own printk clock. From "Starting new kernel"
// on, the old clock is gone and the new one starts at 0 somewhere the host cannot see, so every
// new-kernel landmark is placed on the host's clock (ConsoleLine.at): a line with a printk time is
// at t0 + printk, where t0 (the new clock's zero on the host's clock) is the smallest
// `at - printk` over the new kernel's lines (a line cannot arrive before it was printed, so each
// difference is an upper bound of t0, and the smallest is the tightest); a line printed before
// the kernel's clock runs (printk 0.000000: arm64 before sched_clock, the banner) is at its
// arrival. That is exact only when early lines reach the host as they are printed: the bench
// boots its guests with the arch's early console (ArchSpec.earlyConsole).
import { REBOOT_MARK } from "../session/kexec.js";
import type { ConsoleLine } from "../vm/console.js";
import type { HandoverMetric, HandoverPhase } from "./handover-types.js";

const PRINTK = /\[\s*(\d+)\.(\d{6})\]/;

const STARTING = /kexec_core: Starting new kernel/;
const BANNER = /Linux version \d/;

/** The new kernel's landmarks: each ends the phase named, in boot order. */
const LANDMARKS: readonly { readonly phase: HandoverPhase; readonly re: RegExp }[] = [
  { phase: "purgatory", re: BANNER },
  // build_all_zonelists(), the first thing mm_core_init() prints; kho_memory_init() follows.
  { phase: "early-boot", re: /Built \d+ zonelists/ },
  // kmem_cache_init(), right after kho_memory_init(), memblock_free_all() and mem_init().
  { phase: "mm-init", re: /SLUB: HWalign=/ },
  { phase: "kernel-init", re: /Run \/init as init process/ },
  { phase: "userspace", re: /KHO-GUEST: ready boot_id=/ },
];
const DEFERRED = /node \d+ deferred pages initialised in (\d+)ms/;
const MEMORY = /Memory: \d+K\/\d+K available \(.*?(\d+)K reserved/;

/** The printk time of a line in ms, or undefined for a line without one. */
export function printkMs(text: string): number | undefined {
  const m = PRINTK.exec(text);
  return m ? Number(m[1]) * 1000 + Number(m[2]) / 1000 : undefined;
}

/** The "NK reserved" of a kernel's "Memory: ..." line in `text` (a console or dmesg), if any. */
export function reservedKiB(text: string): number | undefined {
  const m = MEMORY.exec(text);
  return m ? Number(m[1]) : undefined;
}

export interface CutHandover {
  readonly phasesMs: Partial<Record<HandoverPhase | HandoverMetric, number>>;
  /** The new kernel's "Memory: ... NK reserved". */
  readonly reservedKiBAfter?: number;
  /** Landmarks that were not found, each as the phase it would have ended. */
  readonly missing: readonly HandoverPhase[];
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/**
 * Cuts one kexec's console (the lines from before the reboot mark to past the new kernel's ready
 * line) into phases. A landmark not found leaves its phase out (listed in `missing`); the next
 * phase then starts at the last landmark found.
 */
export function cutHandover(lines: readonly ConsoleLine[]): CutHandover {
  const phasesMs: Partial<Record<HandoverPhase | HandoverMetric, number>> = {};
  const missing: HandoverPhase[] = [];
  const markAt = lines.findIndex((l) => REBOOT_MARK.test(l.text));
  const startAt = lines.findIndex((l, i) => i > markAt && STARTING.test(l.text));
  const mark = lines[markAt];
  const start = lines[startAt];
  const markMs = mark && printkMs(mark.text);
  const startMs = start && printkMs(start.text);
  if (markMs !== undefined && startMs !== undefined && markAt >= 0)
    phasesMs.shutdown = round(startMs - markMs);
  else missing.push("shutdown");
  if (!start) return { phasesMs, missing: [...missing, ...LANDMARKS.map((l) => l.phase)] };

  // The new kernel's lines: from its banner (arm64's old kernel still prints after "Starting new
  // kernel": "psci: CPU1 killed", "Bye!", on its own clock).
  const bannerAt = lines.findIndex((l, i) => i > startAt && BANNER.test(l.text));
  const next = bannerAt >= 0 ? lines.slice(bannerAt) : [];
  // t0: the new printk clock's zero on the host's clock (see the header).
  let t0 = Number.POSITIVE_INFINITY;
  for (const l of next) {
    const ms = printkMs(l.text);
    if (ms !== undefined && ms > 0) t0 = Math.min(t0, l.at - ms);
  }
  const hostTime = (l: ConsoleLine) => {
    const ms = printkMs(l.text);
    return ms !== undefined && ms > 0 && Number.isFinite(t0) ? t0 + ms : l.at;
  };

  let from = start.at;
  let seq = start.seq;
  for (const { phase, re } of LANDMARKS) {
    const line = next.find((l) => l.seq > seq && re.test(l.text));
    if (!line) {
      missing.push(phase);
      continue;
    }
    const at = hostTime(line);
    phasesMs[phase] = round(Math.max(0, at - from));
    from = at;
    seq = line.seq;
  }
  const deferred = next.flatMap((l) => {
    const m = DEFERRED.exec(l.text);
    return m ? [Number(m[1])] : [];
  });
  if (deferred.length) phasesMs["deferred-pages"] = deferred.reduce((a, b) => a + b, 0);
  const reserved = next.map((l) => reservedKiB(l.text)).find((v) => v !== undefined);
  return { phasesMs, missing, ...(reserved !== undefined ? { reservedKiBAfter: reserved } : {}) };
}
