// What every command shares: error printing (one sentence + evidence, no stack trace for
// errors the user can act on) and option parsers.
import { InvalidArgumentError } from "commander";
import { parseArchList, type ArchName } from "../src/arch.js";
import { DecodeError, HarnessError } from "../src/errors.js";

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
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(
    `kho: internal error (a bug in the harness, please report it): ${err.message}\n${err.stack ?? ""}\n`,
  );
  return 2;
}
