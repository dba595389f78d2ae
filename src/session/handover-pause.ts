// Work done at the handover itself: once the old kernel prints "Starting new kernel" (every
// kexec callback has run, LUO has serialized its sessions) and before the new kernel boots, with
// the guest paused over QMP. The new kernel frees some handed-over state early in its boot
// (LUO's root blob, luo_core.c), so only then can the host read all of it.
import type { Vm } from "../vm/qemu.js";

export type HandoverWork<T> = (vm: Vm) => Promise<T | undefined>;

/** What a HandoverWork gave and whether the pause came in time, or why it gave nothing. */
export type AtHandover<T> =
  | {
      readonly kind: "read";
      readonly value: T;
      /** How long the guest stayed paused. */
      readonly pausedMs: number;
      /** The new kernel had already printed its banner when the guest stopped: the memory may
       *  have moved on, so what was read is not the handover's state. */
      readonly late: boolean;
    }
  /** The work threw or gave nothing. */
  | { readonly kind: "failed"; readonly detail: string }
  /** The kexec ended (or failed) without the old kernel saying it starts the new one. */
  | { readonly kind: "missed"; readonly detail: string };

interface Pending {
  readonly key: string;
  readonly work: HandoverWork<unknown>;
  readonly settle: (r: AtHandover<unknown>) => void;
}

const missed: AtHandover<never> = {
  kind: "missed",
  detail: "the kexec ended without the old kernel printing 'Starting new kernel'",
};

const STARTING_NEW_KERNEL = /kexec_core: Starting new kernel/;
const BANNER = /Linux version \d/;

/** The work waiting for a guest's next kexec. */
export class HandoverPause {
  private pending: Pending[] = [];

  /**
   * Resolves after `work` ran at the next kexec armed for, or says why it did not (the kexec
   * never reached the handover, or the work failed or gave nothing). Works under the same `key`
   * (the members of a shared guest asking for the same thing) run once and share the result.
   */
  add<T>(key: string, work: HandoverWork<T>): Promise<AtHandover<T>> {
    return new Promise((resolve) => {
      this.pending.push({ key, work, settle: resolve as Pending["settle"] });
    });
  }

  /**
   * Takes the pending work for the kexec that starts now (console position `since`): pauses the
   * guest when the old kernel says it starts the new one, runs the work, and lets it go on.
   * Whatever has not run when `done` fires resolves as missed. Never throws: the kexec's own
   * wait reports what went wrong.
   */
  arm(vm: Vm, since: number, done: AbortSignal): void {
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    let unsubscribe = (): unknown => undefined;
    const settleAll = (r: AtHandover<unknown> = missed) => batch.forEach((p) => p.settle(r));
    done.addEventListener("abort", () => (unsubscribe(), settleAll()), { once: true });
    const fire = (line: { seq: number }) => {
      unsubscribe();
      void runPaused(vm, line.seq, batch).catch((err: unknown) =>
        settleAll({ kind: "failed", detail: `pausing the guest failed: ${String(err)}` }),
      );
    };
    const seen = vm.console.entriesSince(since).find((l) => STARTING_NEW_KERNEL.test(l.text));
    if (seen) fire(seen);
    else unsubscribe = vm.console.onLine((l) => void (STARTING_NEW_KERNEL.test(l.text) && fire(l)));
  }
}

async function runPaused(vm: Vm, from: number, batch: readonly Pending[]): Promise<void> {
  const started = performance.now();
  await vm.qmp.stop();
  try {
    const byKey = new Map<string, { value: unknown } | { error: string }>();
    for (const p of batch) {
      if (byKey.has(p.key)) continue;
      const got = await p.work(vm).then(
        (value) => (value === undefined ? { error: "the read gave nothing" } : { value }),
        (err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }),
      );
      byKey.set(p.key, got);
    }
    const late = vm.console.entriesSince(from).some((l) => BANNER.test(l.text));
    const pausedMs = Math.round(performance.now() - started);
    for (const p of batch) {
      const got = byKey.get(p.key) ?? { error: "no result" };
      p.settle(
        "value" in got
          ? { kind: "read", value: got.value, pausedMs, late }
          : { kind: "failed", detail: `the read at the kexec pause failed: ${got.error}` },
      );
    }
  } finally {
    await vm.qmp.cont();
  }
}
