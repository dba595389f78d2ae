// What each of the kernel's liveupdate selftests (tools/testing/selftests/liveupdate/ in the
// Debian 7.2.13 tree) does and prints, read from its source, so a runner can drive the two-stage
// kexec tests and judge their output. Line references are to that tree. The lines judged below
// (stage 1's ready and PID lines, stage 2's pass lines) were also checked by running the real
// binaries against a userspace stand-in for /dev/liveupdate (linked with
// -Wl,--wrap=open,--wrap=ioctl); the binaries themselves are unchanged.
import { parseKtap, type KtapResult } from "./ktap.js";

export type LiveupdateSelftestName =
  "liveupdate" | "luo_kexec_simple" | "luo_multi_session" | "luo_stress_sessions" | "luo_stress_files";

/** One invocation of a test binary in the guest. */
export interface SelftestRun {
  /** argv after the binary path. */
  readonly args: readonly string[];
  /**
   * Environment the test needs. None reads any variable of its own; kselftest.h only skips the
   * `TAP version 13` header when `KSFT_TAP_LEVEL` is set, so leave that unset.
   */
  readonly env: Readonly<Record<string, string>>;
  /** Exit status of a passing run (kselftest: 0 pass, 1 fail, 4 skip). */
  readonly exitCode: number;
}

/** A memfd the test preserves: one page, `data` written at offset 0 through a MAP_SHARED
 *  mapping (so the file position stays 0), NUL-terminated (luo_test_utils.c:81-114). */
export interface PreservedMemfd {
  readonly token: number;
  readonly data: string;
}

export interface PreservedSession {
  readonly name: string;
  readonly memfds: readonly PreservedMemfd[];
}

interface SelftestBase {
  readonly name: LiveupdateSelftestName;
  /** File name of the compiled binary (the Makefile's program name). */
  readonly binary: string;
  /** Its source file in tools/testing/selftests/liveupdate/. */
  readonly source: string;
  readonly summary: string;
}

/**
 * `liveupdate` (liveupdate.c, kselftest_harness): 15 uAPI tests of one fixture, no kexec.
 *
 * Run: `liveupdate` with no arguments, as root, on a kernel booted with `liveupdate=on` (and
 * KHO enabled), stdout and stderr merged. Each test runs in a forked child with a 30 s timeout
 * (kselftest_harness.h:82); the whole run takes well under a second on a LUO kernel.
 * - Without /dev/liveupdate (open fails with ENOENT) every test SKIPs, and the binary still
 *   **exits 0** (`# Totals: ... skip:15`), so judge it by its KTAP, not its exit code.
 * - The device is exclusive (EBUSY on a second open): nothing else, e.g. a guest agent, may hold
 *   /dev/liveupdate open while it runs, or `basic_open_close` and the rest FAIL. A stage-1
 *   daemon of the tests below does not hold it (it closes the device before forking).
 * - It leaves no outgoing state: every session it creates is closed (unpreserved) again, so it
 *   can run before a two-stage test's stage 1 or after its stage 2 in the same boot.
 * - `preserve_many_sessions` raises RLIMIT_NOFILE to 2032 (needs root or a high hard limit).
 * Useful harness options (kselftest_harness.h:1106-1146): `-l` lists tests, `-r
 * liveupdate_device.<test>` runs one.
 */
export interface SingleStageSelftest extends SelftestBase {
  readonly twoStage: false;
  readonly run: SelftestRun & {
    /** Plan count and test names, in the order printed (`ok N liveupdate_device.<test>`). */
    readonly ktap: { readonly plan: number; readonly tests: readonly string[] };
  };
}

/**
 * A two-stage kexec test built on luo_test_utils.c's `luo_test()`. The guest must:
 *
 * 1. **Stage 1** (the kernel that will kexec, booted with `liveupdate=on` and KHO on, as root):
 *    run `BIN` (same as `BIN --stage 1`) with stdin from /dev/null and only fds 0-2 open.
 *    - It opens /dev/liveupdate (any failure, including EBUSY because someone else holds it,
 *      gives `1..0 # SKIP Failed to open /dev/liveupdate. Is the luo module loaded?`, exit 4;
 *      luo_test_utils.c:260-267).
 *    - It decides which stage it is in: RETRIEVE_SESSION of {@link stateSession} returns ENOENT
 *      in stage 1 and succeeds in stage 2 (:269-275). The requested stage (`--stage N`/`-s N`,
 *      default 1, :229-252) must match, else `Bail out! Stage mismatch ...`, exit 1 (:277-282).
 *    - It creates the state session holding one memfd that contains `"2"` (:161-178), then the
 *      test's {@link sessions}, closes /dev/liveupdate and calls `daemonize_and_wait()`
 *      (:197-227): the process forks; the **parent** prints `Child PID: <pid>` and
 *      {@link stage1}.readyLine and **exits 0**; the **child** calls setsid(), closes fds 0-2
 *      (only those: any other inherited fd stays open), chdir("/") and sleeps forever,
 *      **holding the session fds**. Closing them (killing the daemon, an init shutdown,
 *      `systemctl kexec`) unpreserves the sessions, so stage 2 would then report a stage mismatch.
 *    - stdout is fully buffered when it is not a terminal (these tests never call
 *      ksft_print_header(), which would set line buffering), so over a pipe the lines appear
 *      only when the parent exits: wait for the process to exit with 0, then look for the ready
 *      line. The pipe reaches EOF right after, because the daemon closes its copies at once.
 * 2. **Kexec** without stopping userspace: kexec_file_load (`kexec -l -s`; KHO needs the file
 *    variant) of the same kernel (or the next one) with the current cmdline (it must keep
 *    `liveupdate=on`; do_kexec.sh uses `--reuse-cmdline`) and the initrd, then
 *    reboot(LINUX_REBOOT_CMD_KEXEC) directly (`kexec -e`). LUO serializes the sessions inside
 *    that syscall while the daemon still holds them.
 * 3. **Stage 2** (the new kernel, again with `liveupdate=on`): run `BIN --stage 2` (or `-s 2`),
 *    once. Without the flag the default stage 1 mismatches (`Bail out! Stage mismatch Requested
 *    --stage 1, but system is in stage 2.`) and, worse, that run has already retrieved the state
 *    session; its exit closes the fd, which finishes and removes the session
 *    (kernel/liveupdate/luo_session.c:236-262), so a later `--stage 2` sees no state session
 *    and mismatches too. Stage 2 reads `"2"` from the state memfd, retrieves every session,
 *    compares each memfd's first page with `strcmp` (nothing else: not size, seals, position or
 *    other pages), FINISHes every session and prints {@link stage2}.passLine; exit 0. A failure
 *    prints `Bail out! [<function>:<line>] <what> (errno: <strerror>)` and
 *    `# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:0 error:0`, exit 1; a content mismatch is
 *    preceded by `# Data mismatch! Expected '<x>', Got '<y>'`.
 *
 * No KTAP plan or result lines are printed by either stage: only `# ` diagnostics, the bare
 * pass line, `Bail out!` or `1..0 # SKIP`. Use {@link judgeSelftestRun}.
 *
 * All four tests use distinct session names and each stage 1 releases /dev/liveupdate before
 * daemonizing, so (from the source; not yet tried in a guest) all four stage 1s can run one
 * after another before a single kexec, and all four stage 2s after it. A second stage 1 of the
 * same test in one boot fails (`luo_create_session for state tracking`, EEXIST) while the
 * first daemon lives. After a successful stage 2 the state session is gone, so stage 1 can run
 * again in that boot for another hop.
 */
export interface TwoStageSelftest extends SelftestBase {
  readonly twoStage: true;
  /** How the binary knows its stage: the presence of {@link stateSession} after kexec. */
  readonly stageDetection: "state-session";
  /** Created in stage 1 with one memfd holding "2"; retrieved, read and finished in stage 2. */
  readonly stateSession: PreservedSession;
  /** The test's own sessions, created in stage 1 and verified and finished in stage 2. */
  readonly sessions: readonly PreservedSession[];
  /** Raised by stage 1 itself (it skips with exit 4 if setrlimit fails with EPERM). */
  readonly nofileLimit?: number;
  readonly stage1: SelftestRun & {
    /** Stage 1 leaves a detached daemon holding every session fd until the kexec. */
    readonly daemon: true;
    /** The last line the parent prints before exiting 0: sessions are pinned, kexec now. */
    readonly readyLine: string;
    /** Matches the daemon's PID line; group 1 is the PID (check /proc/PID before kexec). */
    readonly daemonPid: RegExp;
  };
  readonly stage2: SelftestRun & {
    /** The final line; it has no `# ` prefix (ksft_print_msg("\n--- ... ---\n")). */
    readonly passLine: string;
  };
}

export type SelftestSpec = SingleStageSelftest | TwoStageSelftest;

const READY_LINE = "# [STAGE 1] You may now perform kexec reboot.";
const DAEMON_PID = /^# \[STAGE 1\] Child PID: (\d+)\. Resources are pinned\.$/;

const LIVEUPDATE_TESTS = [
  "basic_open_close",
  "exclusive_open",
  "create_duplicate_session",
  "create_distinct_sessions",
  "preserve_memfd",
  "preserve_multiple_memfds",
  "preserve_complex_scenario",
  "preserve_unsupported_fd",
  "prevent_double_preservation",
  "create_session_no_null_termination",
  "create_session_empty_name",
  "get_session_name",
  "get_session_name_max_length",
  "preserve_many_sessions",
  "preserve_many_files",
].map((t) => `liveupdate_device.${t}`);

function state(name: string, token: number): PreservedSession {
  return { name, memfds: [{ token, data: "2" }] };
}

function twoStage(
  base: SelftestBase & Pick<TwoStageSelftest, "stateSession" | "sessions" | "nofileLimit">,
  passLine: string,
): TwoStageSelftest {
  return {
    ...base,
    twoStage: true,
    stageDetection: "state-session",
    stage1: {
      args: [],
      env: {},
      exitCode: 0,
      daemon: true,
      readyLine: READY_LINE,
      daemonPid: DAEMON_PID,
    },
    stage2: {
      // `-s 2`: 7.3 parses the stage with getopt() alone, so `--stage 2` is refused there.
      args: ["-s", "2"],
      env: {},
      exitCode: 0,
      passLine,
    },
  };
}

const STRESS_FILES = 500;
const STRESS_SESSIONS = 2000;

/** The five programs of the liveupdate selftests Makefile, in its order. */
export const LIVEUPDATE_SELFTESTS: readonly SelftestSpec[] = [
  {
    name: "liveupdate",
    binary: "liveupdate",
    source: "liveupdate.c",
    summary:
      "uAPI without kexec: open/exclusive open (EBUSY), duplicate (EEXIST) and distinct sessions, " +
      "preserving 1, 2 and 4 memfds in 2 sessions, /dev/null (ENOENT), double preservation (EBUSY), " +
      "unterminated and empty names (EINVAL), GET_NAME incl. 63 chars, 2000 sessions, 500 files",
    twoStage: false,
    run: {
      args: [],
      env: {},
      exitCode: 0,
      ktap: { plan: LIVEUPDATE_TESTS.length, tests: LIVEUPDATE_TESTS },
    },
  },
  twoStage(
    {
      name: "luo_kexec_simple",
      binary: "luo_kexec_simple",
      source: "luo_kexec_simple.c",
      summary: "one session with one memfd across one kexec",
      stateSession: state("kexec_simple_state", 999),
      sessions: [{ name: "test-session", memfds: [{ token: 0x1a, data: "hello kexec world" }] }],
    },
    "--- SIMPLE KEXEC TEST PASSED ---",
  ),
  twoStage(
    {
      name: "luo_multi_session",
      binary: "luo_multi_session",
      source: "luo_multi_session.c",
      summary: "two empty sessions, a session with one memfd and one with two, across one kexec",
      stateSession: state("kexec_multi_state", 998),
      sessions: [
        { name: "multi-test-empty-1", memfds: [] },
        { name: "multi-test-empty-2", memfds: [] },
        { name: "multi-test-files-1", memfds: [{ token: 0x1001, data: "Data for session files 1" }] },
        {
          name: "multi-test-files-2",
          memfds: [
            { token: 0x2002, data: "First file for session files 2" },
            { token: 0x3003, data: "Second file for session files 2" },
          ],
        },
      ],
    },
    "--- MULTI-SESSION KEXEC TEST PASSED ---",
  ),
  twoStage(
    {
      name: "luo_stress_sessions",
      binary: "luo_stress_sessions",
      source: "luo_stress_sessions.c",
      summary: `${STRESS_SESSIONS} empty sessions across one kexec`,
      stateSession: state("kexec_many_state", 999),
      sessions: Array.from({ length: STRESS_SESSIONS }, (_, i) => ({ name: `many-test-${i}`, memfds: [] })),
      nofileLimit: STRESS_SESSIONS + 32,
    },
    `--- MANY-SESSIONS KEXEC TEST PASSED (${STRESS_SESSIONS} sessions) ---`,
  ),
  twoStage(
    {
      name: "luo_stress_files",
      binary: "luo_stress_files",
      source: "luo_stress_files.c",
      summary: `${STRESS_FILES} memfds in one session across one kexec`,
      stateSession: state("kexec_many_files_state", 9999),
      sessions: [
        {
          name: "many_files_session",
          memfds: Array.from({ length: STRESS_FILES }, (_, i) => ({ token: i, data: `file-data-${i}` })),
        },
      ],
    },
    `--- MANY-FILES KEXEC TEST PASSED (${STRESS_FILES} files) ---`,
  ),
];

export function liveupdateSelftest(name: LiveupdateSelftestName): SelftestSpec {
  const spec = LIVEUPDATE_SELFTESTS.find((s) => s.name === name);
  if (!spec) throw new Error(`no liveupdate selftest named ${name}`);
  return spec;
}

export interface SelftestVerdict {
  readonly status: "pass" | "fail" | "skip";
  /** One sentence: why it failed or skipped, or what passed. */
  readonly reason: string;
  /** Stage 1 only: the daemon holding the sessions (must still be alive at the kexec). */
  readonly daemonPid?: number;
  readonly ktap: KtapResult;
}

/**
 * Judges one run of a selftest from its exit status (null: killed by a signal or still
 * running) and its merged output. For a two-stage test, `stage` says which invocation it was.
 */
export function judgeSelftestRun(
  spec: SelftestSpec,
  stage: 1 | 2,
  run: { readonly exitCode: number | null; readonly output: string },
): SelftestVerdict {
  const ktap = parseKtap(run.output);
  const verdict = (status: SelftestVerdict["status"], reason: string, daemonPid?: number): SelftestVerdict =>
    daemonPid === undefined ? { status, reason, ktap } : { status, reason, daemonPid, ktap };
  const label = spec.twoStage ? `${spec.name} stage ${stage}` : spec.name;

  if (ktap.plan?.skipReason !== undefined || run.exitCode === 4) {
    return verdict("skip", `${label} skipped: ${ktap.plan?.skipReason ?? "exit status 4"}`);
  }
  if (ktap.bailOut !== undefined)
    return verdict("fail", `${label} bailed out: ${ktap.bailOut.replace(/\n/g, " ")}`);
  if (!spec.twoStage) return judgeHarness(label, ktap, run.exitCode, verdict);

  const expectedExit = stage === 1 ? spec.stage1.exitCode : spec.stage2.exitCode;
  if (run.exitCode !== expectedExit) {
    const how = run.exitCode === null ? "did not exit normally" : `exited with ${run.exitCode}`;
    return verdict("fail", `${label} ${how}, expected ${expectedExit}`);
  }
  const lines = run.output.replace(/\r/g, "").split("\n");
  if (stage === 1) {
    const pid = lines.map((l) => spec.stage1.daemonPid.exec(l.trimEnd())).find((m) => m)?.[1];
    if (!lines.some((l) => l.trimEnd() === spec.stage1.readyLine) || pid === undefined) {
      return verdict(
        "fail",
        `${label} exited 0 without printing "${spec.stage1.readyLine}" and the daemon's PID`,
      );
    }
    return verdict("pass", `${label} is ready for kexec; daemon ${pid} holds the sessions`, Number(pid));
  }
  if (!ktap.text.some((l) => l.trim() === spec.stage2.passLine)) {
    return verdict("fail", `${label} exited 0 without printing "${spec.stage2.passLine}"`);
  }
  return verdict("pass", `${label}: ${spec.stage2.passLine.replace(/^-+ | -+$/g, "")}`);
}

function judgeHarness(
  label: string,
  ktap: KtapResult,
  exitCode: number | null,
  verdict: (status: SelftestVerdict["status"], reason: string) => SelftestVerdict,
): SelftestVerdict {
  const failed = ktap.tests.filter((t) => t.status === "fail").map((t) => t.name);
  switch (ktap.outcome) {
    case "fail":
      return verdict("fail", `${label}: ${failed.length} failed: ${failed.join(", ") || "see totals"}`);
    case "skip":
      return verdict("skip", `${label}: every test skipped (${ktap.tests[0]?.reason ?? "no reason given"})`);
    case "incomplete": {
      const where = ktap.unfinished ? `; ${ktap.unfinished} started but never finished` : "";
      return verdict("fail", `${label}: ${ktap.tests.length} of ${ktap.plan?.count ?? "?"} results${where}`);
    }
    case "pass":
      if (exitCode !== 0)
        return verdict("fail", `${label}: all results passed but it exited with ${exitCode}`);
      return verdict("pass", `${label}: ${ktap.tests.filter((t) => t.status === "pass").length} passed`);
  }
}
