// Work done at the handover itself: after every kexec callback has run (LUO has serialized its
// sessions) and before the new kernel boots, with the guest stopped. The new kernel frees some
// handed-over state early in its boot (LUO's root blob, luo_core.c), so only then can the host
// read all of it. Two ways to stop there:
//  - a breakpoint at `machine_kexec` through QEMU's gdbstub, when the session knows where that
//    function is in the running kernel (System.map moved by KASLR): the guest stops there
//    whatever the console does, under TCG or KVM;
//  - else the console line `kexec_core: Starting new kernel`, printed just before, then a QMP
//    stop: under KVM the new kernel can already be running by the time the host reads it
//    (reported as `late`).
import { GdbStub } from "../vm/gdbstub.js";
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
      /** How the guest was stopped, and (console) why the breakpoint was not used. */
      readonly via: PauseVia;
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

export type PauseVia =
  | {
      readonly kind: "breakpoint";
      readonly symbol: string;
      readonly addr: string;
      /** Connecting the stub and setting the breakpoint, the guest stopped meanwhile. */
      readonly armMs: number;
    }
  | { readonly kind: "console"; readonly why: string };

/** Where to stop: the running kernel's address of `symbol`, and the arch's breakpoint kind. */
export interface KexecBreakpoint {
  readonly symbol: string;
  readonly addr: bigint;
  readonly kind: number;
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
   * Takes the pending work for the kexec that starts now (console position `since`): stops the
   * guest at the breakpoint when one is given and can be set, else when the old kernel prints
   * that it starts the new one; runs the work and lets the guest go on. Whatever has not run
   * when `done` fires resolves as missed. Never throws: the kexec's own wait reports what went
   * wrong.
   */
  async arm(
    vm: Vm,
    since: number,
    done: AbortSignal,
    /** Where to stop, or why there is no address (the console line is used then). */
    breakpoint: KexecBreakpoint | string = "no kernel address was given",
  ): Promise<void> {
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    if (typeof breakpoint === "string") {
      this.armConsole(vm, since, done, batch, { kind: "console", why: breakpoint });
      return;
    }
    const arming = performance.now();
    const armed = await armBreakpoint(vm, breakpoint).catch((err: unknown) =>
      err instanceof Error ? err.message : String(err),
    );
    if (typeof armed !== "string") {
      const armMs = Math.round(performance.now() - arming);
      this.awaitBreakpoint(vm, since, done, batch, breakpoint, armed, armMs);
      return;
    }
    this.armConsole(vm, since, done, batch, {
      kind: "console",
      why: `the breakpoint could not be set: ${armed}`,
    });
  }

  private awaitBreakpoint(
    vm: Vm,
    since: number,
    done: AbortSignal,
    batch: readonly Pending[],
    bp: KexecBreakpoint,
    gdb: GdbStub,
    armMs: number,
  ): void {
    const addr = `0x${bp.addr.toString(16)}`;
    const via: PauseVia = { kind: "breakpoint", symbol: bp.symbol, addr, armMs };
    void gdb
      .waitStop(done)
      .then(
        () => runPaused(vm, since, batch, via, gdb),
        async () => {
          // the kexec ended without reaching the breakpoint: take it out of the new kernel
          await gdb.interrupt().catch(() => undefined);
          await gdb.detach().catch(() => undefined);
          settle(batch, {
            kind: "missed",
            detail: `the kexec ended without reaching ${bp.symbol} (${addr})`,
          });
        },
      )
      .catch((err: unknown) =>
        settle(batch, { kind: "failed", detail: `pausing the guest failed: ${String(err)}` }),
      );
  }

  private armConsole(
    vm: Vm,
    since: number,
    done: AbortSignal,
    batch: readonly Pending[],
    via: PauseVia,
  ): void {
    let unsubscribe = (): unknown => undefined;
    done.addEventListener("abort", () => (unsubscribe(), settle(batch, missed)), { once: true });
    const fire = (line: { seq: number }) => {
      unsubscribe();
      void runPaused(vm, line.seq, batch, via).catch((err: unknown) =>
        settle(batch, { kind: "failed", detail: `pausing the guest failed: ${String(err)}` }),
      );
    };
    const seen = vm.console.entriesSince(since).find((l) => STARTING_NEW_KERNEL.test(l.text));
    if (seen) fire(seen);
    else unsubscribe = vm.console.onLine((l) => void (STARTING_NEW_KERNEL.test(l.text) && fire(l)));
  }
}

/** Resolves every work of the batch with `r` (a settled promise ignores later calls). */
function settle(batch: readonly Pending[], r: AtHandover<unknown>): void {
  for (const p of batch) p.settle(r);
}

/** Connects the gdbstub (the guest stops), sets the breakpoint and lets the guest run on. */
async function armBreakpoint(vm: Vm, bp: KexecBreakpoint): Promise<GdbStub> {
  const gdb = await GdbStub.attach(vm);
  try {
    await gdb.setBreakpoint(bp.addr, bp.kind);
    gdb.resume();
    return gdb;
  } catch (err) {
    await gdb.detach().catch(() => undefined);
    throw err;
  }
}

/** Runs the batch with the guest stopped: by the breakpoint (`gdb`), or here over QMP. */
async function runPaused(
  vm: Vm,
  from: number,
  batch: readonly Pending[],
  via: PauseVia,
  gdb?: GdbStub,
): Promise<void> {
  const started = performance.now();
  if (!gdb) await vm.qmp.stop();
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
          ? { kind: "read", value: got.value, pausedMs, late, via }
          : { kind: "failed", detail: `the read at the kexec pause failed: ${got.error}` },
      );
    }
  } finally {
    if (gdb) await gdb.detach();
    else await vm.qmp.cont();
  }
}
