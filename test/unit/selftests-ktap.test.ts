// parseKtap against output the kernel's kselftest code really prints. The long vectors were
// captured from the liveupdate selftest binaries built from the Debian 7.2.13 tree; the short
// ones follow the printf formats in tools/testing/selftests/kselftest.h and kselftest_harness.h.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseKtap } from "../../src/selftests/ktap.js";
import { judgeSelftestRun, liveupdateSelftest } from "../../src/selftests/liveupdate-specs.js";

/** `liveupdate 2>&1` on a host kernel without LUO (this harness's dev host, 6.18): all SKIP, exit 0. */
const HOST_ALL_SKIP = `
TAP version 13
1..15
# Starting 15 tests from 1 test cases.
#  RUN           liveupdate_device.basic_open_close ...
#      SKIP      /dev/liveupdate does not exist.
#            OK  liveupdate_device.basic_open_close
ok 1 liveupdate_device.basic_open_close # SKIP /dev/liveupdate does not exist.
#  RUN           liveupdate_device.exclusive_open ...
#      SKIP      /dev/liveupdate does not exist.
#            OK  liveupdate_device.exclusive_open
ok 2 liveupdate_device.exclusive_open # SKIP /dev/liveupdate does not exist.
#  RUN           liveupdate_device.create_duplicate_session ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.create_duplicate_session
ok 3 liveupdate_device.create_duplicate_session # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.create_distinct_sessions ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.create_distinct_sessions
ok 4 liveupdate_device.create_distinct_sessions # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.preserve_memfd ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.preserve_memfd
ok 5 liveupdate_device.preserve_memfd # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.preserve_multiple_memfds ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.preserve_multiple_memfds
ok 6 liveupdate_device.preserve_multiple_memfds # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.preserve_complex_scenario ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.preserve_complex_scenario
ok 7 liveupdate_device.preserve_complex_scenario # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.preserve_unsupported_fd ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.preserve_unsupported_fd
ok 8 liveupdate_device.preserve_unsupported_fd # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.prevent_double_preservation ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.prevent_double_preservation
ok 9 liveupdate_device.prevent_double_preservation # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.create_session_no_null_termination ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.create_session_no_null_termination
ok 10 liveupdate_device.create_session_no_null_termination # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.create_session_empty_name ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.create_session_empty_name
ok 11 liveupdate_device.create_session_empty_name # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.get_session_name ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.get_session_name
ok 12 liveupdate_device.get_session_name # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.get_session_name_max_length ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.get_session_name_max_length
ok 13 liveupdate_device.get_session_name_max_length # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.preserve_many_sessions ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.preserve_many_sessions
ok 14 liveupdate_device.preserve_many_sessions # SKIP /dev/liveupdate does not exist
#  RUN           liveupdate_device.preserve_many_files ...
#      SKIP      /dev/liveupdate does not exist
#            OK  liveupdate_device.preserve_many_files
ok 15 liveupdate_device.preserve_many_files # SKIP /dev/liveupdate does not exist
# PASSED: 15 / 15 tests passed.
# 15 skipped test(s) detected. Consider enabling relevant config options to improve coverage.
# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:15 error:0
`;

/**
 * `liveupdate 2>&1` with a userspace stand-in for /dev/liveupdate that implements none of the
 * error checks: the real binary's pass, EXPECT-failure and ASSERT-abort formats. Exit 1.
 */
const MIXED = `
TAP version 13
1..15
# Starting 15 tests from 1 test cases.
#  RUN           liveupdate_device.basic_open_close ...
#            OK  liveupdate_device.basic_open_close
ok 1 liveupdate_device.basic_open_close
#  RUN           liveupdate_device.exclusive_open ...
# liveupdate.c:88:exclusive_open:Expected self->fd2 (4) < 0 (0)
# liveupdate.c:89:exclusive_open:Expected errno (0) == EBUSY (16)
# exclusive_open: Test failed
#          FAIL  liveupdate_device.exclusive_open
not ok 2 liveupdate_device.exclusive_open
#  RUN           liveupdate_device.create_duplicate_session ...
#            OK  liveupdate_device.create_duplicate_session
ok 3 liveupdate_device.create_duplicate_session
#  RUN           liveupdate_device.create_distinct_sessions ...
#            OK  liveupdate_device.create_distinct_sessions
ok 4 liveupdate_device.create_distinct_sessions
#  RUN           liveupdate_device.preserve_memfd ...
#            OK  liveupdate_device.preserve_memfd
ok 5 liveupdate_device.preserve_memfd
#  RUN           liveupdate_device.preserve_multiple_memfds ...
#            OK  liveupdate_device.preserve_multiple_memfds
ok 6 liveupdate_device.preserve_multiple_memfds
#  RUN           liveupdate_device.preserve_complex_scenario ...
#            OK  liveupdate_device.preserve_complex_scenario
ok 7 liveupdate_device.preserve_complex_scenario
#  RUN           liveupdate_device.preserve_unsupported_fd ...
# liveupdate.c:359:preserve_unsupported_fd:Expected ret (0) == -ENOENT (-2)
# preserve_unsupported_fd: Test failed
#          FAIL  liveupdate_device.preserve_unsupported_fd
not ok 8 liveupdate_device.preserve_unsupported_fd
#  RUN           liveupdate_device.prevent_double_preservation ...
# liveupdate.c:395:prevent_double_preservation:Expected ret (0) == -EBUSY (-16)
# liveupdate.c:399:prevent_double_preservation:Expected ret (0) == -EBUSY (-16)
# prevent_double_preservation: Test failed
#          FAIL  liveupdate_device.prevent_double_preservation
not ok 9 liveupdate_device.prevent_double_preservation
#  RUN           liveupdate_device.create_session_no_null_termination ...
# liveupdate.c:425:create_session_no_null_termination:Expected ioctl(self->fd1, LIVEUPDATE_IOCTL_CREATE_SESSION, &args) (0) < 0 (0)
# liveupdate.c:426:create_session_no_null_termination:Expected errno (0) == EINVAL (22)
# create_session_no_null_termination: Test failed
#          FAIL  liveupdate_device.create_session_no_null_termination
not ok 10 liveupdate_device.create_session_no_null_termination
#  RUN           liveupdate_device.create_session_empty_name ...
# liveupdate.c:445:create_session_empty_name:Expected session_fd (-17) == -EINVAL (-22)
# create_session_empty_name: Test failed
#          FAIL  liveupdate_device.create_session_empty_name
not ok 11 liveupdate_device.create_session_empty_name
#  RUN           liveupdate_device.get_session_name ...
# liveupdate.c:468:get_session_name:Expected get_session_name(session_fd, name_buf, sizeof(name_buf)) (-25) == 0 (0)
# get_session_name: Test terminated by assertion
#          FAIL  liveupdate_device.get_session_name
not ok 12 liveupdate_device.get_session_name
#  RUN           liveupdate_device.get_session_name_max_length ...
# liveupdate.c:497:get_session_name_max_length:Expected get_session_name(session_fd, name_buf, sizeof(name_buf)) (-25) == 0 (0)
# get_session_name_max_length: Test terminated by assertion
#          FAIL  liveupdate_device.get_session_name_max_length
not ok 13 liveupdate_device.get_session_name_max_length
#  RUN           liveupdate_device.preserve_many_sessions ...
#            OK  liveupdate_device.preserve_many_sessions
ok 14 liveupdate_device.preserve_many_sessions
#  RUN           liveupdate_device.preserve_many_files ...
#            OK  liveupdate_device.preserve_many_files
ok 15 liveupdate_device.preserve_many_files
# FAILED: 8 / 15 tests passed.
# Totals: pass:8 fail:7 xfail:0 xpass:0 skip:0 error:0
`;

/**
 * `liveupdate 2>&1` on a LUO kernel where every test passes, exit 0. Built, not captured: MIXED's
 * pass lines for all 15 tests, and the closing lines kselftest_harness.h prints for a clean run.
 */
const LUO_ALL_PASS = `
TAP version 13
1..15
# Starting 15 tests from 1 test cases.
#  RUN           liveupdate_device.basic_open_close ...
#            OK  liveupdate_device.basic_open_close
ok 1 liveupdate_device.basic_open_close
#  RUN           liveupdate_device.exclusive_open ...
#            OK  liveupdate_device.exclusive_open
ok 2 liveupdate_device.exclusive_open
#  RUN           liveupdate_device.create_duplicate_session ...
#            OK  liveupdate_device.create_duplicate_session
ok 3 liveupdate_device.create_duplicate_session
#  RUN           liveupdate_device.create_distinct_sessions ...
#            OK  liveupdate_device.create_distinct_sessions
ok 4 liveupdate_device.create_distinct_sessions
#  RUN           liveupdate_device.preserve_memfd ...
#            OK  liveupdate_device.preserve_memfd
ok 5 liveupdate_device.preserve_memfd
#  RUN           liveupdate_device.preserve_multiple_memfds ...
#            OK  liveupdate_device.preserve_multiple_memfds
ok 6 liveupdate_device.preserve_multiple_memfds
#  RUN           liveupdate_device.preserve_complex_scenario ...
#            OK  liveupdate_device.preserve_complex_scenario
ok 7 liveupdate_device.preserve_complex_scenario
#  RUN           liveupdate_device.preserve_unsupported_fd ...
#            OK  liveupdate_device.preserve_unsupported_fd
ok 8 liveupdate_device.preserve_unsupported_fd
#  RUN           liveupdate_device.prevent_double_preservation ...
#            OK  liveupdate_device.prevent_double_preservation
ok 9 liveupdate_device.prevent_double_preservation
#  RUN           liveupdate_device.create_session_no_null_termination ...
#            OK  liveupdate_device.create_session_no_null_termination
ok 10 liveupdate_device.create_session_no_null_termination
#  RUN           liveupdate_device.create_session_empty_name ...
#            OK  liveupdate_device.create_session_empty_name
ok 11 liveupdate_device.create_session_empty_name
#  RUN           liveupdate_device.get_session_name ...
#            OK  liveupdate_device.get_session_name
ok 12 liveupdate_device.get_session_name
#  RUN           liveupdate_device.get_session_name_max_length ...
#            OK  liveupdate_device.get_session_name_max_length
ok 13 liveupdate_device.get_session_name_max_length
#  RUN           liveupdate_device.preserve_many_sessions ...
#            OK  liveupdate_device.preserve_many_sessions
ok 14 liveupdate_device.preserve_many_sessions
#  RUN           liveupdate_device.preserve_many_files ...
#            OK  liveupdate_device.preserve_many_files
ok 15 liveupdate_device.preserve_many_files
# PASSED: 15 / 15 tests passed.
# Totals: pass:15 fail:0 xfail:0 xpass:0 skip:0 error:0
`;

describe("parseKtap: kselftest_harness (liveupdate.c)", () => {
  it("reads an all-skip run: plan, 15 skips with reasons, totals, summary", () => {
    const r = parseKtap(HOST_ALL_SKIP);
    expect(r.version).toBe("TAP version 13");
    expect(r.plan).toEqual({ count: 15 });
    expect(r.tests).toHaveLength(15);
    expect(r.tests[0]).toMatchObject({
      number: 1,
      name: "liveupdate_device.basic_open_close",
      status: "skip",
      reason: "/dev/liveupdate does not exist.",
      harnessVerdict: "OK",
    });
    expect(r.tests.every((t) => t.status === "skip")).toBe(true);
    expect(r.totals).toEqual({ pass: 0, fail: 0, xfail: 0, xpass: 0, skip: 15, error: 0 });
    expect(r.summary).toEqual({ passed: 15, total: 15, ok: true });
    expect(r.outcome).toBe("skip");
    expect(r.text).toEqual([]);
  });

  it("reads passes, EXPECT failures and ASSERT aborts with their evidence", () => {
    const r = parseKtap(MIXED);
    expect(r.tests.map((t) => t.status).join(",")).toBe(
      "pass,fail,pass,pass,pass,pass,pass,fail,fail,fail,fail,fail,fail,pass,pass",
    );
    const excl = r.tests[1];
    expect(excl).toMatchObject({
      number: 2,
      name: "liveupdate_device.exclusive_open",
      harnessVerdict: "FAIL",
    });
    expect(excl?.reason).toBeUndefined();
    expect(excl?.diagnostics).toEqual([
      "liveupdate.c:88:exclusive_open:Expected self->fd2 (4) < 0 (0)",
      "liveupdate.c:89:exclusive_open:Expected errno (0) == EBUSY (16)",
      "exclusive_open: Test failed",
    ]);
    expect(r.tests[11]?.diagnostics).toContain("get_session_name: Test terminated by assertion");
    expect(r.totals).toMatchObject({ pass: 8, fail: 7 });
    expect(r.summary).toEqual({ passed: 8, total: 15, ok: false });
    expect(r.outcome).toBe("fail");
  });

  it("reports a test that started but never finished (crash or hang of the harness)", () => {
    const text = [
      "TAP version 13",
      "1..2",
      "# Starting 2 tests from 1 test cases.",
      "#  RUN           liveupdate_device.basic_open_close ...",
      "#            OK  liveupdate_device.basic_open_close",
      "ok 1 liveupdate_device.basic_open_close",
      "#  RUN           liveupdate_device.exclusive_open ...",
    ].join("\n");
    const r = parseKtap(text);
    expect(r.unfinished).toBe("liveupdate_device.exclusive_open");
    expect(r.outcome).toBe("incomplete");
  });

  it("reads ksft_test_result_code's XFAIL/XPASS/SKIP directives and its `#  reason` on a failure", () => {
    // kselftest.h:302-346: "%s %u %s%s" with directive " # XFAIL " etc., or " #  " before a message.
    const r = parseKtap(
      [
        "1..4",
        "ok 1 f.expected_to_fail # XFAIL unknown",
        "ok 2 f.fixed_now # XPASS unknown",
        "ok 3 f.no_device # SKIP /dev/liveupdate does not exist",
        "not ok 4 f.broken #  Test terminated by timeout",
      ].join("\n"),
    );
    expect(r.tests.map((t) => [t.name, t.status, t.reason])).toEqual([
      ["f.expected_to_fail", "xfail", "unknown"],
      ["f.fixed_now", "xpass", "unknown"],
      ["f.no_device", "skip", "/dev/liveupdate does not exist"],
      ["f.broken", "fail", "Test terminated by timeout"],
    ]);
    expect(r.outcome).toBe("fail");
  });
});

describe("parseKtap: kselftest.h low-level API", () => {
  it("reads nameless results from ksft_test_result_* and ksft_exit_skip after a plan", () => {
    // "ok %u # XFAIL ", "not ok %u # error ", "ok %u # SKIP " (kselftest.h:245-300, :449-456).
    const r = parseKtap(
      [
        "TAP version 13",
        "1..4",
        "ok 1 first passes",
        "ok 2 # XFAIL needs CONFIG_FOO",
        "not ok 3 # error could not mmap",
        "ok 4 # SKIP no hugepages",
        "# Totals: pass:1 fail:0 xfail:1 xpass:0 skip:1 error:1",
      ].join("\n"),
    );
    expect(r.tests.map((t) => [t.number, t.name, t.status, t.reason])).toEqual([
      [1, "first passes", "pass", undefined],
      [2, "", "xfail", "needs CONFIG_FOO"],
      [3, "", "fail", "error: could not mmap"],
      [4, "", "skip", "no hugepages"],
    ]);
    expect(r.outcome).toBe("fail"); // error:1 in the totals, and the failed result
  });

  it("reads ksft_exit_skip before any test as a whole-program skip", () => {
    const r = parseKtap("1..0 # SKIP Failed to open /dev/liveupdate. Is the luo module loaded?\n");
    expect(r.plan).toEqual({
      count: 0,
      skipReason: "Failed to open /dev/liveupdate. Is the luo module loaded?",
    });
    expect(r.tests).toEqual([]);
    expect(r.outcome).toBe("skip");
  });

  it("joins a multi-line Bail out! message (ksft_exit_fail_msg with an embedded newline)", () => {
    const r = parseKtap(
      [
        "Bail out! Stage mismatch Requested --stage 2, but system is in stage 1.",
        "(State session kexec_simple_state: MISSING)",
        "# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:0 error:0",
      ].join("\n"),
    );
    expect(r.bailOut).toBe(
      "Stage mismatch Requested --stage 2, but system is in stage 1.\n(State session kexec_simple_state: MISSING)",
    );
    expect(r.text).toEqual([]);
    expect(r.outcome).toBe("fail");
  });

  it("keeps a two-stage test's bare pass line as text and its ksft_print_msg lines as diagnostics", () => {
    const r = parseKtap(
      "# [STAGE 2] Starting post-kexec verification...\n# [STAGE 2] Finalizing state session...\n# \n--- SIMPLE KEXEC TEST PASSED ---\n",
    );
    expect(r.diagnostics).toEqual([
      "[STAGE 2] Starting post-kexec verification...",
      "[STAGE 2] Finalizing state session...",
      "",
    ]);
    expect(r.text).toEqual(["--- SIMPLE KEXEC TEST PASSED ---"]);
    expect(r.outcome).toBe("incomplete"); // no plan: judge it with judgeSelftestRun
  });
});

describe("parseKtap: nesting and console noise", () => {
  it("nests a `# `-prefixed document under the result that closes it (kselftest runner.sh)", () => {
    const r = parseKtap(
      [
        "TAP version 13",
        "1..1",
        "# timeout set to 45",
        "# selftests: liveupdate: liveupdate",
        "# TAP version 13",
        "# 1..2",
        "# # Starting 2 tests from 1 test cases.",
        "# #  RUN           liveupdate_device.basic_open_close ...",
        "# #            OK  liveupdate_device.basic_open_close",
        "# ok 1 liveupdate_device.basic_open_close",
        "# ok 2 liveupdate_device.exclusive_open # SKIP busy",
        "# # Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0",
        "ok 1 selftests: liveupdate: liveupdate",
      ].join("\n"),
    );
    expect(r.tests).toHaveLength(1);
    const sub = r.tests[0]?.subtests;
    expect(sub?.tests.map((t) => [t.name, t.status])).toEqual([
      ["liveupdate_device.basic_open_close", "pass"],
      ["liveupdate_device.exclusive_open", "skip"],
    ]);
    expect(sub?.tests[0]?.harnessVerdict).toBe("OK");
    expect(sub?.totals?.skip).toBe(1);
    expect(r.diagnostics).toEqual(["timeout set to 45", "selftests: liveupdate: liveupdate"]);
    expect(r.outcome).toBe("pass");
  });

  it("nests a 4-space indented KTAP subtest document", () => {
    const r = parseKtap(
      [
        "KTAP version 1",
        "1..1",
        "    KTAP version 1",
        "    # Subtest: inner",
        "    1..2",
        "    ok 1 a",
        "    not ok 2 b",
        "not ok 1 inner",
      ].join("\n"),
    );
    expect(r.version).toBe("KTAP version 1");
    expect(r.tests[0]?.status).toBe("fail");
    expect(r.tests[0]?.subtests?.tests.map((t) => t.status)).toEqual(["pass", "fail"]);
    expect(r.tests[0]?.subtests?.diagnostics).toEqual(["Subtest: inner"]);
  });

  it("sets aside kernel log lines, CRs, and a printk that split a result line", () => {
    const r = parseKtap(
      [
        "TAP version 13\r",
        "[   12.345678] luo: Retrieved live update data, liveupdate number: 1\r",
        "1..2\r",
        "<6>[   12.400000] liveupdate test: Registered 3 FLBs with file handler: [memfd-v2]",
        "ok 1 liveupdate_device.basic_open_close",
        "ok 2 liveupdate_dev[   13.000001] KHO: found kexec handover data.",
        "ice.exclusive_open",
      ].join("\n"),
    );
    expect(r.tests.map((t) => t.name)).toEqual([
      "liveupdate_device.basic_open_close",
      "liveupdate_device.exclusive_open",
    ]);
    expect(r.kernelLog).toEqual([
      "[   12.345678] luo: Retrieved live update data, liveupdate number: 1",
      "<6>[   12.400000] liveupdate test: Registered 3 FLBs with file handler: [memfd-v2]",
      "[   13.000001] KHO: found kexec handover data.",
    ]);
    expect(r.outcome).toBe("pass");
  });

  it("never throws, whatever it is given", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string(), fc.constantFrom("ok 1 x", "1..3", "# RUN", "Bail out!", "    1..1"))),
        (lines) => {
          const r = parseKtap(lines.join("\n"));
          expect(["pass", "fail", "skip", "incomplete"]).toContain(r.outcome);
        },
      ),
    );
  });
});

describe("judgeSelftestRun", () => {
  const simple = liveupdateSelftest("luo_kexec_simple");

  it("judges the single-stage binary by its KTAP, not its exit status (all-skip exits 0)", () => {
    const v = judgeSelftestRun(liveupdateSelftest("liveupdate"), 1, { exitCode: 0, output: HOST_ALL_SKIP });
    expect(v.status).toBe("skip");
    expect(v.reason).toContain("/dev/liveupdate does not exist");
    const f = judgeSelftestRun(liveupdateSelftest("liveupdate"), 1, { exitCode: 1, output: MIXED });
    expect(f.status).toBe("fail");
    expect(f.reason).toContain("liveupdate_device.exclusive_open");
  });

  it("passes a LUO kernel's full pass only with exit 0 and every planned result", () => {
    const spec = liveupdateSelftest("liveupdate");
    expect(judgeSelftestRun(spec, 1, { exitCode: 0, output: LUO_ALL_PASS })).toMatchObject({
      status: "pass",
      reason: "liveupdate: 15 passed",
    });
    expect(judgeSelftestRun(spec, 1, { exitCode: 1, output: LUO_ALL_PASS })).toMatchObject({
      status: "fail",
      reason: "liveupdate: all results passed but it exited with 1",
    });
    // Cut off while the last test ran (the binary was killed, or the console lost the rest).
    const cut = LUO_ALL_PASS.slice(
      0,
      LUO_ALL_PASS.indexOf("#            OK  liveupdate_device.preserve_many_files"),
    );
    expect(judgeSelftestRun(spec, 1, { exitCode: null, output: cut })).toMatchObject({
      status: "fail",
      reason:
        "liveupdate: 14 of 15 results; liveupdate_device.preserve_many_files started but never finished",
    });
  });

  it("stage 1: ready line plus daemon PID, exit 0", () => {
    const output = [
      "# [STAGE 1] Starting pre-kexec setup...",
      "# [STAGE 1] Creating state file for next stage (2)...",
      "# [STAGE 1] Creating session 'test-session' and preserving memfd...",
      "# [STAGE 1] Forking persistent child to hold sessions...",
      "# [STAGE 1] Child PID: 24110. Resources are pinned.",
      "# [STAGE 1] You may now perform kexec reboot.",
      "",
    ].join("\n");
    const v = judgeSelftestRun(simple, 1, { exitCode: 0, output });
    expect(v).toMatchObject({ status: "pass", daemonPid: 24110 });
    // Exit 0 without the ready line (or without the daemon's PID): the sessions are not pinned.
    const noReady = output.replace("# [STAGE 1] You may now perform kexec reboot.\n", "");
    expect(judgeSelftestRun(simple, 1, { exitCode: 0, output: noReady })).toMatchObject({
      status: "fail",
      reason:
        'luo_kexec_simple stage 1 exited 0 without printing "# [STAGE 1] You may now perform kexec reboot." and the daemon\'s PID',
    });
    const noPid = output.replace(/^# \[STAGE 1\] Child PID.*\n/m, "");
    expect(judgeSelftestRun(simple, 1, { exitCode: 0, output: noPid }).status).toBe("fail");
  });

  it("stage 2: pass line, skip on a missing device, fail on a stage mismatch", () => {
    const pass = [
      "# [STAGE 2] Starting post-kexec verification...",
      "# [STAGE 2] Retrieving session 'test-session'...",
      "# [STAGE 2] Restoring and verifying memfd (token 0x1a)...",
      "# [STAGE 2] Test data verified successfully.",
      "# [STAGE 2] Finalizing test session...",
      "# [STAGE 2] Finalizing state session...",
      "# ",
      "--- SIMPLE KEXEC TEST PASSED ---",
    ].join("\n");
    expect(judgeSelftestRun(simple, 2, { exitCode: 0, output: pass })).toMatchObject({
      status: "pass",
      reason: "luo_kexec_simple stage 2: SIMPLE KEXEC TEST PASSED",
    });
    // Another test's pass line is not this one's.
    const otherPass = pass.replace("SIMPLE KEXEC", "MULTI-SESSION KEXEC");
    expect(judgeSelftestRun(simple, 2, { exitCode: 0, output: otherPass })).toMatchObject({
      status: "fail",
      reason: 'luo_kexec_simple stage 2 exited 0 without printing "--- SIMPLE KEXEC TEST PASSED ---"',
    });
    const skip = "1..0 # SKIP Failed to open /dev/liveupdate. Is the luo module loaded?\n";
    expect(judgeSelftestRun(simple, 2, { exitCode: 4, output: skip }).status).toBe("skip");
    const mismatch =
      "Bail out! Stage mismatch Requested --stage 2, but system is in stage 1.\n(State session kexec_simple_state: MISSING)\n# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:0 error:0\n";
    const v = judgeSelftestRun(simple, 2, { exitCode: 1, output: mismatch });
    expect(v.status).toBe("fail");
    expect(v.reason).toContain("MISSING");
    expect(judgeSelftestRun(simple, 2, { exitCode: null, output: "# [STAGE 2] Starting" }).status).toBe(
      "fail",
    );
  });
});
