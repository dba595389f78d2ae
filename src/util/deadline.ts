// How much longer than the defaults a slow host may take: every guest deadline (console waits
// and silences, SSH commands and connects, agent lines, QMP events), every scenario's whole
// deadline and the build's stall deadline are multiplied by one factor, as LAVA's timeouts and
// kselftest's runner allow. `--timeout-factor F` sets KHO_TIMEOUT_FACTOR, so the harness and
// anything it starts see the same value.
import { HarnessError } from "../errors.js";

export const TIMEOUT_FACTOR_ENV = "KHO_TIMEOUT_FACTOR";
const MIN = 0.1;
const MAX = 100;

/** A factor as the user wrote it, or one sentence saying what is wrong with it. */
export function parseTimeoutFactor(text: string, from: string): number {
  const f = Number(text.trim());
  if (text.trim() === "" || !Number.isFinite(f) || f < MIN || f > MAX)
    throw new HarnessError(
      `${from} ${JSON.stringify(text)} is not a timeout factor: give a number from ${MIN} to ${MAX}`,
    );
  return f;
}

/** The factor in force: KHO_TIMEOUT_FACTOR, or 1. */
export function timeoutFactor(): number {
  const env = process.env[TIMEOUT_FACTOR_ENV];
  return env === undefined ? 1 : parseTimeoutFactor(env, TIMEOUT_FACTOR_ENV);
}

/** `ms` times the factor in force. */
export function scaled(ms: number): number {
  return Math.round(ms * timeoutFactor());
}
