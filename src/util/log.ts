// Progress lines for long steps. Everything goes to stderr so stdout stays parseable (--json, KTAP).

export type Logger = (line: string) => void;

export const stderrLogger: Logger = (line) => process.stderr.write(`${line}\n`);
export const silentLogger: Logger = () => undefined;

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s - m * 60)).padStart(2, "0")}s`;
}

/** Measures a step and reports it as one line when it ends. */
export async function timed<T>(
  log: Logger,
  label: string,
  fn: () => Promise<T>,
): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  const ms = performance.now() - start;
  log(`# ${label}: ${formatDuration(ms)}`);
  return { value, ms };
}

/**
 * Prints a heartbeat while a long step runs, so a user (and CI's no-output watchdogs) see it
 * is alive: at most every `everyMs`, with whatever `status()` says about progress.
 */
export function heartbeat(log: Logger, label: string, status: () => string, everyMs = 30_000): () => void {
  const start = performance.now();
  const timer = setInterval(() => {
    log(`# ${label}: ${formatDuration(performance.now() - start)} ${status()}`.trimEnd());
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
