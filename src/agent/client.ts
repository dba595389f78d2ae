// Reading what the guest agent printed: one JSON line, checked against the schema of the command
// that printed it (protocol.ts). A line that is not JSON is the guest's doing (it died mid-line,
// a kernel message got in): AgentOutputError, which the scenario context turns into a failed
// check with the line and stderr. A JSON line that does not match its schema means the agent
// and the host disagree on the protocol: a HarnessError naming the field.
import type { z } from "zod";
import { HarnessError } from "../errors.js";
import { parseWith } from "../util/zod-issue.js";
import { AgentErrorSchema, type AgentError } from "./protocol.js";

/** The agent printed something that is not one JSON object. */
export class AgentOutputError extends Error {
  override readonly name = "AgentOutputError";
  constructor(
    message: string,
    readonly evidence: readonly string[],
  ) {
    super(message);
  }
}

/**
 * The agent's line as `schema` says, or its error object (`ok: false`, checked against
 * AgentErrorSchema). `command` and `stderr` are for the evidence of a line that does not parse.
 */
export function parseAgentLine<S extends z.ZodType>(
  schema: S,
  line: string,
  command: string,
  stderr = "",
): z.output<S> | AgentError {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    const lines = (text: string, n: number) => (text.trim() ? text.trimEnd().split("\n").slice(-n) : []);
    throw new AgentOutputError(`${command} did not print JSON`, [...lines(line, 5), ...lines(stderr, 10)]);
  }
  const isError = typeof json === "object" && json !== null && (json as { ok?: unknown }).ok === false;
  const r = isError ? parseWith(AgentErrorSchema, json) : parseWith(schema, json);
  if (!r.ok) {
    throw new HarnessError(`${command} printed JSON the host does not expect: ${r.problem}`, [
      line.slice(0, 600),
    ]);
  }
  return r.value;
}

/** The one sentence for an agent error: the step, the error and its errno name. */
export function agentErrorText(e: AgentError): string {
  return `kho-agent ${e.command} failed at ${e.step}: ${e.error} (${e.errname ?? e.errno})`;
}
