// Never orphan QEMU: every live QEMU pid is registered here and SIGKILLed when the harness
// exits, whatever the reason (normal exit, SIGINT/SIGTERM/SIGHUP, uncaught exception).
// The kernel-level backstop for SIGKILL of the harness itself is PR_SET_PDEATHSIG (qemu.ts).

const live = new Map<number, string>();
let installed = false;

/** Registers a QEMU pid; returns the function that forgets it (call it once QEMU has exited). */
export function trackProcess(pid: number, name: string): () => void {
  install();
  live.set(pid, name);
  return () => live.delete(pid);
}

/** The pids still registered (for tests and diagnostics). */
export function liveProcesses(): ReadonlyMap<number, string> {
  return live;
}

/** Synchronous: it must work inside `exit` handlers. */
export function killAll(): void {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  live.clear();
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", killAll);
  // The monitor variant observes the crash without changing Node's default (print and exit 1).
  process.on("uncaughtExceptionMonitor", killAll);
  for (const signal of SIGNALS) {
    const handler = (): void => {
      killAll();
      // Listening to a signal cancels Node's default of dying from it. Die as before unless
      // someone else (a CLI that writes partial reports) also listens and will decide. execa's
      // signal-exit listens too but only re-raises when alone, so it does not count as someone.
      const others = process.listenerCount(signal) - 1 - signalExitListeners();
      if (others > 0) return;
      process.off(signal, handler);
      process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

type Counted = { count?: unknown } | undefined;

/** How many signal listeners signal-exit (v4, and v3 if some dependency brings it) holds. */
function signalExitListeners(): number {
  const v4 = (globalThis as Record<symbol, Counted>)[Symbol.for("signal-exit emitter")];
  const v3 = (process as { __signal_exit_emitter__?: Counted }).__signal_exit_emitter__;
  const n = (e: Counted) => (typeof e?.count === "number" ? e.count : 0);
  return n(v4) + n(v3);
}
