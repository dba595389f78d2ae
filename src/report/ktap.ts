// KTAP output (Documentation/dev-tools/ktap.rst), as the kernel's own selftests print it.
import { checkLine } from "./format.js";
import type { ScenarioResult, SetupFailure } from "./verdict.js";

/** The KTAP a run printed, kept in its run folder. */
export const KTAP_FILE = "results.ktap";

/** KTAP of a finished run's results (what `kho report merge` writes for the merged run). */
export function ktapOf(
  results: readonly ScenarioResult[],
  setupFailures: readonly SetupFailure[],
  diagnostics: readonly string[] = [],
): string {
  const lines: string[] = [];
  const w = new KtapWriter((l) => lines.push(l), results.length);
  for (const d of diagnostics) w.diagnostic(d);
  for (const f of setupFailures) w.setupFailure(f);
  for (const r of results) w.result(r);
  return `${lines.join("\n")}\n`;
}

export class KtapWriter {
  private n = 0;
  constructor(
    private readonly write: (line: string) => void,
    private readonly total: number,
  ) {
    write("KTAP version 1");
    write(`1..${total}`);
  }

  diagnostic(line: string): void {
    this.write(`# ${line}`);
  }

  /** A shared setup failure: printed once, before the results it leaves not run. */
  setupFailure(f: SetupFailure): void {
    this.diagnostic(`setup ${f.arch} (${f.stage}) failed: ${f.message}`);
    for (const line of f.evidence) this.diagnostic(`  | ${line}`);
    this.diagnostic(`setup ${f.arch}: ${f.notRun} results not run because of it`);
  }

  result(r: ScenarioResult): void {
    this.n++;
    const name = `${r.id}.${r.arch}${r.attempt ? `.run${r.attempt}` : ""}`;
    const ok = r.verdict === "pass" || r.verdict === "xfail" || r.verdict === "skip";
    const directive =
      r.verdict === "skip"
        ? ` # SKIP ${r.reason ?? ""}`
        : r.verdict === "xfail"
          ? ` # XFAIL ${r.reason ?? ""}`
          : r.verdict === "xpass"
            ? ` # XPASS (expected to fail, passed: update the expectation) ${r.reason ?? ""}`
            : r.verdict === "notrun"
              ? ` # NOTRUN ${r.reason ?? ""}`
              : "";
    for (const line of r.verdict === "fail" || r.verdict === "error" ? (r.evidence ?? []) : [])
      this.diagnostic(line);
    if ((r.verdict === "fail" || r.verdict === "error") && r.reason) this.diagnostic(`${name}: ${r.reason}`);
    // Checks that failed or were not done (passed ones would only lengthen the log), directly
    // before the result line as KTAP places a test's diagnostics.
    for (const c of r.checks ?? []) if (c.status !== "passed") this.diagnostic(checkLine(c));
    this.write(`${ok ? "ok" : "not ok"} ${this.n} ${name}${directive.trimEnd()}`);
  }

  get written(): number {
    return this.n;
  }
}
