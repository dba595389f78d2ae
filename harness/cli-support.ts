// What every command shares: error printing (one sentence + evidence, no stack trace for
// errors the user can act on), option parsers, and clean exits (temporary files and QEMU guests
// go away however the command ends, SIGINT and SIGTERM included).
import { mkdtempSync, rmSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError } from "commander";
import { parseArchList, type ArchName } from "../src/arch.js";
import { DecodeError, HarnessError } from "../src/errors.js";
import { killAll, liveProcesses } from "../src/vm/reaper.js";

export function archOption(value: string): ArchName[] {
  try {
    return parseArchList(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

export function intOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`expected a positive whole number, got "${value}"`);
  return n;
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Runs a command body and turns its failure into the process exit code. */
export function action<A extends unknown[]>(
  body: (...args: A) => Promise<number | void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      process.exitCode = (await body(...args)) ?? 0;
    } catch (e) {
      process.exitCode = reportError(e);
    }
  };
}

export function reportError(e: unknown): number {
  if (e instanceof HarnessError) {
    process.stderr.write(`kho: ${e.message}\n`);
    for (const line of e.evidence) process.stderr.write(`  | ${line}\n`);
    return e.exitCode;
  }
  if (e instanceof DecodeError) {
    process.stderr.write(`kho: ${e.message}\n`);
    return 1;
  }
  const sys = systemError(e);
  if (sys) {
    process.stderr.write(`kho: ${sys}\n`);
    return 1;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(
    `kho: internal error (a bug in the harness, please report it): ${err.message}\n${err.stack ?? ""}\n`,
  );
  return 2;
}

/** Node's error codes for a file the user named that is missing or unusable, in words. */
const SYSTEM_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "is a directory",
  ENOTDIR: "a path component is not a directory",
  ENOSPC: "no space left on the device",
  EROFS: "the file system is read-only",
  EMFILE: "too many open files",
};

/** "cannot open /x: no such file or directory" for a failed file operation, else undefined. */
function systemError(e: unknown): string | undefined {
  const err = e as NodeJS.ErrnoException | undefined;
  const what = err?.code ? SYSTEM_ERRORS[err.code] : undefined;
  if (!what || !(err instanceof Error)) return undefined;
  const verb = err.syscall === "open" ? "open" : (err.syscall ?? "use");
  return err.path ? `cannot ${verb} ${err.path}: ${what}` : `${err.message} (${what})`;
}

const EXIT_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Makes every way out of the command clean. Temporary files (the run's scratch folder, each
 * guest's QMP socket folder, the KVM probe's stub) go under one private folder: TMPDIR points
 * there for this process and its children, and the folder is removed at exit. On SIGINT,
 * SIGTERM or SIGHUP every QEMU guest is SIGKILLed (the reaper), the folder removed, one sentence
 * printed, and the process exits with the shell's code for the signal (130, 143, 129); artifacts
 * already written under --out stay. Call once, before anything is created in the temp dir.
 */
export function installCleanExit(): void {
  const scratch = mkdtempSync(join(tmpdir(), `kho-${process.pid}-`));
  process.env.TMPDIR = scratch;
  const cleanup = () => {
    killAll();
    rmSync(scratch, { recursive: true, force: true });
  };
  process.on("exit", cleanup);
  process.on("uncaughtExceptionMonitor", cleanup);
  let stopping = false;
  const stop = (why: string, code: number) => {
    if (stopping) return; // a terminal's Ctrl-C arrives from the launcher too
    stopping = true;
    const guests = [...new Set(liveProcesses().values())];
    cleanup();
    const stopped = guests.length
      ? `stopped ${guests.length === 1 ? "the QEMU guest" : `${guests.length} QEMU guests`} ${guests.join(", ")}`
      : "no QEMU guest was running";
    process.stderr.write(`\nkho: ${why}: ${stopped} and removed the temporary files\n`);
    process.exit(code);
  };
  for (const signal of EXIT_SIGNALS) {
    process.on(signal, () => stop(`interrupted by ${signal}`, 128 + constants.signals[signal]));
  }
  // bin/kho starts this process and says so: if the launcher dies without passing a signal on
  // (SIGKILL, an OOM kill), nothing else would stop this run and its guests, so it stops itself.
  const launcher = Number(process.env.KHO_LAUNCHER_PID ?? 0);
  delete process.env.KHO_LAUNCHER_PID; // for this process only, not for what it starts
  if (launcher > 0) {
    setInterval(() => {
      if (process.ppid !== launcher)
        stop(`the kho launcher (pid ${launcher}) is gone`, 128 + constants.signals.SIGTERM);
    }, LAUNCHER_POLL_MS).unref();
  }
}

/** How often a run checks that its launcher is alive (process.ppid changes when it dies). */
const LAUNCHER_POLL_MS = 250;

export const BASE_HELP =
  "what the harness's kernel is configured from: lean (Kconfig's defaults, the default), defconfig, or a config FILE";
