// The guest's answers against the model's: the first step where they differ, said in one line.
import type { Expect } from "./model.js";
import { opLine, type Op, type OpResult } from "./ops.js";

export interface Step {
  readonly op: Op;
  readonly expect: Expect;
}

export interface Mismatch {
  readonly step: number;
  readonly line: string;
  readonly expected: string;
  readonly got: string;
}

function said(r: OpResult | undefined): string {
  if (!r) return "no answer";
  if (r.bad_line) return `the agent refused the line (${r.bad_line})`;
  if (!r.ok) return r.errname ?? `errno ${r.errno ?? "?"}`;
  return r.name === undefined ? "ok" : `ok, name "${r.name}"`;
}

function expected(e: Expect, results: readonly OpResult[]): string {
  if (!e.ok) return e.errname;
  const parts = ["ok"];
  if (e.name !== undefined) parts.push(`name "${e.name}"`);
  if (e.contentOf !== undefined) {
    const f = results[e.contentOf]?.file;
    parts.push(
      `contents of step ${e.contentOf} (${f ? `${f.size} bytes, sha256 ${f.sha256.slice(0, 12)}` : "?"})`,
    );
  }
  if (e.sameInodeAs !== undefined) parts.push(`the file of step ${e.sameInodeAs}`);
  return parts.join(", ");
}

/** Where the answers first differ from the model's, or undefined when they all agree. */
export function firstMismatch(steps: readonly Step[], results: readonly OpResult[]): Mismatch | undefined {
  for (const [i, { op, expect }] of steps.entries()) {
    const r = results[i];
    const miss = (got: string): Mismatch => ({
      step: i,
      line: opLine(op),
      expected: expected(expect, results),
      got,
    });
    if (!r || r.bad_line || r.ok !== expect.ok) return miss(said(r));
    if (!expect.ok) {
      if (r.errname !== expect.errname) return miss(said(r));
      continue;
    }
    if (expect.name !== undefined && r.name !== expect.name) return miss(said(r));
    if (expect.contentOf !== undefined) {
      const want = results[expect.contentOf]?.file;
      const f = r.file;
      if (!f || !want || f.sha256 !== want.sha256 || f.size !== want.size)
        return miss(
          f
            ? `ok, ${f.size} bytes, sha256 ${f.sha256.slice(0, 12)}`
            : `ok, undescribed (${r.describe_error ?? "no file"})`,
        );
    }
    if (expect.sameInodeAs !== undefined) {
      const want = results[expect.sameInodeAs]?.file?.ino;
      if (r.file?.ino === undefined || r.file.ino !== want)
        return miss(`ok, inode ${r.file?.ino ?? "?"} (step ${expect.sameInodeAs} had ${want ?? "?"})`);
    }
  }
  return undefined;
}

/** The sequence as the agent's lines, numbered, with what each answered: for reports and replays. */
export function formatSequence(steps: readonly Step[], results: readonly OpResult[]): string[] {
  return steps.map((s, i) => `${String(i).padStart(3)}  ${opLine(s.op).padEnd(44)} -> ${said(results[i])}`);
}
