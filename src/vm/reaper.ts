// Never orphan QEMU: every live QEMU pid is registered here and SIGKILLed when the harness
// exits, whatever the reason (normal exit, SIGINT/SIGTERM/SIGHUP, uncaught exception).
// The kernel-level backstop for SIGKILL of the harness itself is PR_SET_PDEATHSIG (qemu.ts).

const live = new Map<number, { name: string; signal: NodeJS.Signals }>();
let installed = false;

/**
 * Registers a pid (a negative one: a process group); returns the function that forgets it (call
 * it once the process has exited). QEMU gets SIGKILL. A make gets SIGTERM: GNU make then deletes
 * the target it was writing, where a SIGKILL leaves it half-written (an empty generated
 * sha256-core.S broke the next build of that tree at link time).
 */
export function trackProcess(pid: number, name: string, signal: NodeJS.Signals = "SIGKILL"): () => void {
  install();
  live.set(pid, { name, signal });
  return () => live.delete(pid);
}

/** The pids still registered, by name (for tests and diagnostics). */
export function liveProcesses(): ReadonlyMap<number, string> {
  return new Map([...live].map(([pid, p]) => [pid, p.name]));
}

/** Synchronous: it must work inside `exit` handlers. */
export function killAll(): void {
  for (const [pid, { signal }] of live) {
    try {
      process.kill(pid, signal);
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
