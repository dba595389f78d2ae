// Reads the KTAP/TAP that kselftest binaries print (tools/testing/selftests/kselftest.h and
// kselftest_harness.h in the kernel tree), so a guest run becomes typed per-test results.
// The output may reach us through a serial console, so kernel log lines mixed into it are set
// aside instead of breaking the parse.

export type KtapStatus = "pass" | "fail" | "skip" | "xfail" | "xpass";

export interface KtapTest {
  readonly number: number;
  /** The description after the number; empty for kselftest's nameless `ok N # SKIP` lines. */
  readonly name: string;
  readonly status: KtapStatus;
  /** Text after the directive (`# SKIP reason`), or after a bare `#  ` diagnostic on a failure. */
  readonly reason?: string;
  /** `# ` lines (prefix removed) printed since the previous result: the test's own evidence. */
  readonly diagnostics: readonly string[];
  /** kselftest_harness's own verdict from its `#  OK name` / `#  FAIL name` line, if printed. */
  readonly harnessVerdict?: "OK" | "FAIL";
  /** A nested KTAP document (4-space indented, or `# `-prefixed as kselftest's runner.sh nests). */
  readonly subtests?: KtapResult;
}

/** `# Totals: pass:X fail:Y xfail:Z xpass:W skip:S error:E` (ksft_print_cnts). */
export interface KtapTotals {
  readonly pass: number;
  readonly fail: number;
  readonly xfail: number;
  readonly xpass: number;
  readonly skip: number;
  readonly error: number;
}

export interface KtapResult {
  /** `TAP version 13` or `KTAP version 1`; absent when the binary never printed a header. */
  readonly version?: string;
  /** `1..N`; `1..0 # SKIP reason` (ksft_exit_skip before any test) sets skipReason. */
  readonly plan?: { readonly count: number; readonly skipReason?: string };
  readonly tests: readonly KtapTest[];
  readonly totals?: KtapTotals;
  /** kselftest_harness's `# PASSED: 15 / 15 tests passed.` (or FAILED). */
  readonly summary?: { readonly passed: number; readonly total: number; readonly ok: boolean };
  /** `Bail out! msg` plus any plain continuation lines (ksft_exit_fail_msg with an embedded newline). */
  readonly bailOut?: string;
  /** A harness test that printed `#  RUN name ...` but neither a verdict nor a result (crash, hang). */
  readonly unfinished?: string;
  /** Every `# ` line at this level, prefix removed, in order. */
  readonly diagnostics: readonly string[];
  /** Non-KTAP lines that are not kernel log: e.g. `--- SIMPLE KEXEC TEST PASSED ---`. */
  readonly text: readonly string[];
  /** Kernel log lines (`[   12.345678] ...`) found among the output. */
  readonly kernelLog: readonly string[];
  /**
   * One word for the whole document: `fail` on a bail-out, a failed test or failures in the
   * totals; `skip` on `1..0 # SKIP` or when every test skipped (kselftest_harness exits 0 then,
   * so the exit code cannot tell); `incomplete` without a plan or with fewer results than
   * planned; otherwise `pass`. XFAIL and XPASS count as passing, as in ksft_finished().
   */
  readonly outcome: "pass" | "fail" | "skip" | "incomplete";
}

const VERSION = /^(K?TAP version \d+)\s*$/;
const PLAN = /^1\.\.(\d+)\s*(?:#\s*(.*))?$/;
const RESULT = /^(not ok|ok)(?=\s|$)\s*(\d+)?\s*(.*)$/;
const BAIL = /^Bail out!\s*(.*)$/;
const TOTALS = /^#\s*Totals:\s*pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) error:(\d+)/;
const SUMMARY = /^#\s*(PASSED|FAILED): (\d+) \/ (\d+) tests passed\./;
// kselftest_harness: ksft_print_msg(" RUN           %s ...\n") and ("         %4s  %s\n", "OK"|"FAIL").
const HARNESS_RUN = /^#\s+RUN\s+(\S+) \.\.\.\s*$/;
const HARNESS_VERDICT = /^#\s+(OK|FAIL)\s+(\S+)\s*$/;
const DIAGNOSTIC = /^#(?: (.*)|\s*)$/;
/** printk's console prefix: optional `<level>`, then `[seconds.micros]`. */
const KERNEL_LOG = /^\s*(?:<\d+>)?\[\s*\d+\.\d+\]/;
const KERNEL_LOG_MIDLINE = /\[\s*\d+\.\d{6}\] /;
const NESTED_START = /^(?:K?TAP version \d+|1\.\.\d+)/;

/** Parses kselftest KTAP/TAP output; never throws. */
export function parseKtap(text: string): KtapResult {
  const { lines, kernelLog } = separateKernelLog(text.replace(/\r/g, "").split("\n"));
  return { ...parseLevel(lines), kernelLog };
}

/**
 * Moves printk lines aside. A console message can land in the middle of a user line
 * ("ok 3 na[ 1.2] msg" then "me"); the user part is then rejoined with the next line.
 */
function separateKernelLog(raw: readonly string[]): { lines: string[]; kernelLog: string[] } {
  const lines: string[] = [];
  const kernelLog: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const line = raw[i] ?? "";
    if (KERNEL_LOG.test(line)) {
      kernelLog.push(line.trim());
      continue;
    }
    const mid = KERNEL_LOG_MIDLINE.exec(line);
    if (!mid) {
      lines.push(line);
      continue;
    }
    kernelLog.push(line.slice(mid.index).trim());
    let head = line.slice(0, mid.index);
    const next = raw[i + 1];
    if (next !== undefined && !KERNEL_LOG.test(next) && !startsKnownLine(next)) {
      head += next;
      i++;
    }
    lines.push(head);
  }
  return { lines, kernelLog };
}

function startsKnownLine(line: string): boolean {
  return [VERSION, PLAN, RESULT, BAIL, /^#/].some((re) => re.test(line));
}

type Nesting = { prefix: "    " | "# "; lines: string[] };

function parseLevel(lines: readonly string[]): Omit<KtapResult, "kernelLog"> {
  let version: string | undefined;
  let plan: KtapResult["plan"];
  let totals: KtapTotals | undefined;
  let summary: KtapResult["summary"];
  let bailOut: string | undefined;
  let running: string | undefined;
  const tests: KtapTest[] = [];
  const diagnostics: string[] = [];
  const text: string[] = [];
  let pending: string[] = [];
  const verdicts = new Map<string, "OK" | "FAIL">();
  let nested: Nesting | undefined;
  let lastWasBail = false;

  for (const line of lines) {
    // A nested document continues while lines carry its prefix; it belongs to the next result.
    if (nested && line.startsWith(nested.prefix)) {
      nested.lines.push(line.slice(nested.prefix.length));
      continue;
    }
    if (!nested) {
      for (const prefix of ["    ", "# "] as const) {
        if (line.startsWith(prefix) && NESTED_START.test(line.slice(prefix.length))) {
          nested = { prefix, lines: [line.slice(prefix.length)] };
        }
      }
      if (nested) continue;
    }
    const wasBail = lastWasBail;
    lastWasBail = false;
    let m: RegExpExecArray | null;
    if ((m = VERSION.exec(line))) {
      version ??= m[1];
    } else if ((m = PLAN.exec(line))) {
      const skip = /^SKIP\b\s*(.*)$/i.exec(m[2] ?? "");
      plan = { count: Number(m[1]), ...(skip ? { skipReason: skip[1] ?? "" } : {}) };
    } else if ((m = RESULT.exec(line))) {
      const test = parseResult(m, tests.length + 1, pending, nested && parseLevel(nested.lines));
      tests.push(verdicts.has(test.name) ? { ...test, harnessVerdict: verdicts.get(test.name) } : test);
      if (test.name === running) running = undefined;
      pending = [];
      nested = undefined;
    } else if ((m = BAIL.exec(line))) {
      bailOut = bailOut === undefined ? (m[1] ?? "") : `${bailOut}\n${m[1] ?? ""}`;
      lastWasBail = true;
    } else if ((m = TOTALS.exec(line))) {
      const [pass = 0, fail = 0, xfail = 0, xpass = 0, skip = 0, error = 0] = m.slice(1, 7).map(Number);
      totals = { pass, fail, xfail, xpass, skip, error };
      diagnostics.push(stripHash(line));
    } else if ((m = SUMMARY.exec(line))) {
      summary = { passed: Number(m[2]), total: Number(m[3]), ok: m[1] === "PASSED" };
      diagnostics.push(stripHash(line));
    } else if ((m = HARNESS_RUN.exec(line))) {
      running = m[1];
      diagnostics.push(stripHash(line));
    } else if ((m = HARNESS_VERDICT.exec(line))) {
      verdicts.set(m[2] ?? "", m[1] === "OK" ? "OK" : "FAIL");
      if (m[2] === running) running = undefined;
      diagnostics.push(stripHash(line));
    } else if (DIAGNOSTIC.test(line)) {
      const d = stripHash(line);
      diagnostics.push(d);
      pending.push(d);
    } else if (line.trim() !== "") {
      if (wasBail) {
        bailOut = `${bailOut ?? ""}\n${line}`;
        lastWasBail = true;
      } else text.push(line);
    }
  }
  // A nested start that no result line closed was not a subtest after all.
  const leftover = nested;
  if (leftover?.prefix === "# ") diagnostics.push(...leftover.lines);
  else if (leftover) text.push(...leftover.lines.map((l) => leftover.prefix + l));
  const partial = { version, plan, tests, totals, summary, bailOut, unfinished: running, diagnostics, text };
  return dropUndefined({ ...partial, outcome: outcomeOf(partial) });
}

function parseResult(
  m: RegExpExecArray,
  fallbackNumber: number,
  diagnostics: readonly string[],
  subtests: Omit<KtapResult, "kernelLog"> | undefined,
): KtapTest {
  const ok = m[1] === "ok";
  const number = m[2] === undefined ? fallbackNumber : Number(m[2]);
  // The description ends at the first unescaped " #"; kselftest prints "ok 3 # SKIP why" with no name.
  const rest = m[3] ?? "";
  const hash = /(^|[^\\])#/.exec(rest);
  const name = (hash ? rest.slice(0, hash.index + (hash[1] ?? "").length) : rest).trim();
  const directive = hash ? rest.slice(hash.index + hash[0].length).trim() : "";
  const d = /^(SKIP|XFAIL|XPASS|TODO|error)\b\s*(.*)$/i.exec(directive);
  const word = d?.[1]?.toUpperCase();
  const reason = (d ? d[2] : directive)?.trim() || undefined;
  let status: KtapStatus;
  if (word === "SKIP") status = "skip";
  else if (word === "XFAIL") status = "xfail";
  else if (word === "XPASS") status = "xpass";
  else if (word === "TODO") status = ok ? "xpass" : "xfail";
  else status = ok ? "pass" : "fail";
  // ksft_test_result_error(): "not ok N # error msg" is a failure whose reason names the error.
  const why = word === "ERROR" ? `error${reason ? `: ${reason}` : ""}` : reason;
  return dropUndefined({
    number,
    name,
    status,
    reason: why,
    diagnostics: [...diagnostics],
    subtests: subtests && { ...subtests, kernelLog: [] },
  });
}

function outcomeOf(r: Omit<KtapResult, "kernelLog" | "outcome">): KtapResult["outcome"] {
  if (r.bailOut !== undefined) return "fail";
  if (r.tests.some((t) => t.status === "fail")) return "fail";
  if (r.totals && (r.totals.fail > 0 || r.totals.error > 0)) return "fail";
  if (r.summary && !r.summary.ok) return "fail";
  if (r.plan?.count === 0 && r.plan.skipReason !== undefined) return "skip";
  if (!r.plan || r.tests.length < r.plan.count || r.unfinished !== undefined) return "incomplete";
  if (r.tests.length > 0 && r.tests.every((t) => t.status === "skip")) return "skip";
  return "pass";
}

function stripHash(line: string): string {
  return line.replace(/^# ?/, "");
}

/** Optional fields stay absent rather than `undefined`, so results compare and print cleanly. */
function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
