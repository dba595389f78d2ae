// Assertions the report tests share.
import { expect } from "vitest";
import { HarnessError } from "../../../src/errors.js";
import { BAD_INPUT_EXIT } from "../../../src/report/schema.js";

/** The message of what `f` throws: a one-line HarnessError with the bad-input exit code. */
export function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(HarnessError);
    expect((e as HarnessError).exitCode).toBe(BAD_INPUT_EXIT);
    expect((e as Error).message).not.toContain("\n");
    return (e as Error).message;
  }
  throw new Error("it did not throw");
}

/** Checks that every element in an XML fragment is closed, in order (SVG must be XML). */
export function assertBalancedXml(xml: string): void {
  const stack: string[] = [];
  for (const m of xml.matchAll(/<(\/?)([a-zA-Z][\w:-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/g)) {
    const [, closing, name = "", , selfClosing] = m;
    if (selfClosing) continue;
    if (closing) expect(stack.pop(), `closing </${name}>`).toBe(name);
    else stack.push(name);
  }
  expect(stack).toEqual([]);
}
