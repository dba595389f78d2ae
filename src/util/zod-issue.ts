// One sentence for the first thing wrong in a value a zod schema refused: the field's path, what
// it should be and what it was. Used wherever a protocol or file is checked when parsed (the
// agent's and the test module's JSON, report.json).
import { z } from "zod";

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** A value as it appeared in the file, cut short. */
function shown(x: unknown): string {
  return x === undefined ? "missing" : (JSON.stringify(x) ?? typeof x).slice(0, 40);
}

const EXPECTED: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  object: "an object",
  record: "an object",
  array: "an array",
};

/** "results[0].facts[1].frames should be a number, got missing": the issue's path and what is wrong. */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const path = z.core.toDotPath(issue.path) || "the document";
  switch (issue.code) {
    case "invalid_type":
      return `${path} should be ${EXPECTED[issue.expected] ?? issue.expected}, got ${shown(issue.input)}`;
    case "invalid_value":
      return `${path} should be ${issue.values.map(String).join("|")}, got ${shown(issue.input)}`;
    case "invalid_union":
      if (issue.discriminator && "options" in issue && issue.options) {
        const got = isObject(issue.input) ? issue.input[issue.discriminator] : undefined;
        return `${path} should be ${issue.options.map(String).join("|")}, got ${shown(got)}`;
      }
      return `${path} matches none of the forms it may take`;
    case "too_small":
      return `${path} should be at least ${String(issue.minimum)}, got ${shown(issue.input)}`;
    default:
      return `${path}: ${issue.message}`;
  }
}

/** `json` as `schema` says, or the sentence naming its first wrong field (and how many more). */
export function parseWith<S extends z.ZodType>(
  schema: S,
  json: unknown,
): { ok: true; value: z.output<S> } | { ok: false; problem: string } {
  const r = schema.safeParse(json, { reportInput: true });
  if (r.success) return { ok: true, value: r.data };
  const [first, ...rest] = r.error.issues;
  const more = rest.length ? ` (and ${rest.length} more problem${rest.length === 1 ? "" : "s"})` : "";
  return { ok: false, problem: `${first ? describeIssue(first) : "unknown problem"}${more}` };
}
