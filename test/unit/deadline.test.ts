import { afterEach, describe, expect, it } from "vitest";
import { HarnessError } from "../../src/errors.js";
import { parseTimeoutFactor, scaled, TIMEOUT_FACTOR_ENV, timeoutFactor } from "../../src/util/deadline.js";

const saved = process.env[TIMEOUT_FACTOR_ENV];
afterEach(() => {
  if (saved === undefined) delete process.env[TIMEOUT_FACTOR_ENV];
  else process.env[TIMEOUT_FACTOR_ENV] = saved;
});

describe("the timeout factor", () => {
  it("is 1 unless KHO_TIMEOUT_FACTOR says otherwise, and scales every deadline by it", () => {
    delete process.env[TIMEOUT_FACTOR_ENV];
    expect(timeoutFactor()).toBe(1);
    expect(scaled(180_000)).toBe(180_000);
    process.env[TIMEOUT_FACTOR_ENV] = "2.5";
    expect(scaled(180_000)).toBe(450_000);
    process.env[TIMEOUT_FACTOR_ENV] = "0.5";
    expect(scaled(1_001)).toBe(501);
  });

  it("refuses what is not a factor in one sentence naming where it came from", () => {
    for (const bad of ["", "abc", "0", "-1", "1e9", "NaN"]) {
      expect(() => parseTimeoutFactor(bad, "--timeout-factor")).toThrow(HarnessError);
    }
    expect(() => parseTimeoutFactor("abc", "--timeout-factor")).toThrow(
      '--timeout-factor "abc" is not a timeout factor: give a number from 0.1 to 100',
    );
    process.env[TIMEOUT_FACTOR_ENV] = "x";
    expect(() => scaled(1000)).toThrow(/^KHO_TIMEOUT_FACTOR "x" is not a timeout factor/);
    expect(parseTimeoutFactor(" 3 ", "--timeout-factor")).toBe(3);
  });
});
