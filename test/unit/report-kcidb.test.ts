// `kho report kcidb`: a run as KernelCI KCIDB v5.3 data. A real recorded run maps to a document
// the transcribed schema accepts, every verdict has its KCIDB status, an arch whose setup failed
// is a failed build with MISS tests, and a document that breaks the schema is refused with one
// sentence naming the field.
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  KCIDB_FILE,
  KCIDB_STATUS,
  kcidbFromRun,
  sourceParts,
  testPath,
  validateKcidb,
  writeKcidb,
  type KcidbDoc,
  type KcidbOptions,
} from "../../src/report/kcidb.js";
import { KCIDB_STATUSES } from "../../src/report/kcidb-schema.js";
import { loadReport, VERDICTS, type RunReportDoc } from "../../src/report/schema.js";
import type { ScenarioResult, SetupFailure, Verdict } from "../../src/report/verdict.js";
import { refusal } from "./helpers/report-asserts.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "reports");
/** A real run, copied unchanged: `kho exec --arch x86_64 --stage true --stage 'exit 3'`, TCG. */
const REAL = join(FIXTURES, "kcidb-run");
const RUN_ID = "2026-12-05T22-23-38-799Z";
const opts = (over: Partial<KcidbOptions> = {}): KcidbOptions => ({
  origin: "kho",
  runId: RUN_ID,
  runDir: REAL,
  ...over,
});

const realDoc = async (): Promise<RunReportDoc> => (await loadReport(REAL)).doc;

const result = (over: Partial<ScenarioResult> & Pick<ScenarioResult, "id" | "verdict">): ScenarioResult => ({
  arch: "x86_64",
  phaseMs: { boot: 1000 },
  totalMs: 1500,
  ...over,
});

const tmpDirs: string[] = [];
afterAll(async () => {
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
});

describe("a real run as KCIDB", () => {
  it("maps to one checkout, one build and one test, and validates", async () => {
    const doc = validateKcidb(kcidbFromRun(await realDoc(), opts()));
    expect(doc.version).toEqual({ major: 5, minor: 3 });

    expect(doc.checkouts).toHaveLength(1);
    const [checkout] = doc.checkouts ?? [];
    expect(checkout?.id).toMatch(/^kho:[0-9a-f]{16}$/);
    expect(checkout?.origin).toBe("kho");
    expect(checkout?.tree_name).toBe("linux-source-7.2");
    expect(checkout?.git_commit_hash).toBeUndefined();
    expect(checkout?.misc).toMatchObject({
      source: "linux-source-7.2 7.2.13-1",
      package: "linux-source-7.2",
      package_version: "7.2.13-1",
      releases: ["7.2.13"],
    });

    expect(doc.builds).toEqual([
      expect.objectContaining({
        id: `kho:${RUN_ID}/x86_64`,
        checkout_id: checkout?.id,
        architecture: "x86_64",
        status: "PASS",
        start_time: "2026-12-05T22:23:38.898Z",
        duration: 0.053,
        config_name: "config-40e8ab4d8413",
      }),
    ]);
    expect(doc.builds?.[0]?.misc).toMatchObject({
      build_key: "18609dc21db0911f",
      image_sha256: "ff77092330099225a37ae690c73e0ecce8d434c37263476a15a27b4c6ea4449a",
      config_sha256: "40e8ab4d8413ad6b1fea57ca77034bd8697f2a703d1af556a5eca7083f81218d",
    });

    expect(doc.tests).toHaveLength(1);
    const [test] = doc.tests ?? [];
    expect(test).toMatchObject({
      id: `kho:${RUN_ID}/x86_64/exec`,
      build_id: `kho:${RUN_ID}/x86_64`,
      origin: "kho",
      path: "kho.exec.x86_64",
      status: "FAIL",
      start_time: "2026-12-05T22:23:38.898Z",
      duration: 8.191,
      environment: { comment: "QEMU 10.0.2 tcg on vm" },
      // The artifacts were in out/runs/<time>/x86_64/exec: the <arch>/<scenario> tail is kept.
      log_url: `file://${REAL}/x86_64/exec/console.log`,
      misc: { verdict: "fail", reason: "stage 2 exited 3 in boot 2: exit 3", artifacts: "x86_64/exec" },
    });
    expect(test?.environment?.misc).toMatchObject({ accel: "tcg", qemu_binary: "qemu-system-x86_64" });
    // Its evidence was one empty line: nothing worth an excerpt.
    expect(test?.log_excerpt).toBeUndefined();
    expect(test?.misc?.evidence).toBeUndefined();
  });

  it("writeKcidb writes kcidb.json into the run folder, with its artifacts as URLs under --log-url-base", async () => {
    const dir = join(await mkdtemp(join(tmpdir(), "kho-kcidb-")), RUN_ID);
    tmpDirs.push(join(dir, ".."));
    await cp(REAL, dir, { recursive: true });
    const artifacts = join(dir, "x86_64", "exec");
    await mkdir(artifacts, { recursive: true });
    for (const f of ["console.log", "boot-1.log", "qemu.cmd"]) await writeFile(join(artifacts, f), "x\n");

    const path = await writeKcidb(dir, { origin: "kho_ci", logUrlBase: "https://ci.example.org/runs/a b/" });
    expect(path).toBe(join(dir, KCIDB_FILE));
    const written = validateKcidb(JSON.parse(await readFile(path, "utf8")));
    const [test] = written.tests ?? [];
    expect(test?.id).toBe(`kho_ci:${RUN_ID}/x86_64/exec`);
    expect(test?.log_url).toBe("https://ci.example.org/runs/a%20b/x86_64/exec/console.log");
    expect(test?.output_files).toEqual([
      { name: "boot-1.log", url: "https://ci.example.org/runs/a%20b/x86_64/exec/boot-1.log" },
      { name: "qemu.cmd", url: "https://ci.example.org/runs/a%20b/x86_64/exec/qemu.cmd" },
    ]);

    // Without a base: file:// URLs of the folder; the origin defaults to "kho".
    const local = validateKcidb(JSON.parse(await readFile(await writeKcidb(dir), "utf8")));
    expect(local.tests?.[0]?.log_url).toBe(`file://${artifacts}/console.log`);
    expect(local.tests?.[0]?.origin).toBe("kho");
  });

  it("a run folder without its artifacts has no log URL rather than a dead one", async () => {
    const dir = join(await mkdtemp(join(tmpdir(), "kho-kcidb-")), RUN_ID);
    tmpDirs.push(join(dir, ".."));
    await cp(REAL, dir, { recursive: true });
    const written = validateKcidb(JSON.parse(await readFile(await writeKcidb(dir), "utf8")));
    expect(written.tests?.[0]?.log_url).toBeUndefined();
    expect(written.tests?.[0]?.output_files).toBeUndefined();
  });

  it("refuses an origin KCIDB would refuse, and a log URL base that is no URL", async () => {
    const doc = await realDoc();
    expect(refusal(() => kcidbFromRun(doc, opts({ origin: "KHO-ci" })))).toMatch(
      /^the KCIDB origin "KHO-ci" should be a name of lower-case letters/,
    );
    expect(refusal(() => kcidbFromRun(doc, opts({ logUrlBase: "runs/here" })))).toMatch(
      /^the log URL base "runs\/here" is not a URL/,
    );
  });
});

describe("verdicts as KCIDB statuses", () => {
  const expected: Record<Verdict, string> = {
    pass: "PASS",
    fail: "FAIL",
    xpass: "FAIL",
    xfail: "PASS",
    skip: "SKIP",
    notrun: "MISS",
    error: "ERROR",
  };

  it("every verdict has its status, an expected failure is marked in misc", async () => {
    const base = await realDoc();
    const doc: RunReportDoc = {
      ...base,
      results: VERDICTS.map((verdict) => result({ id: `v-${verdict}`, verdict, reason: `why ${verdict}` })),
    };
    const out = validateKcidb(kcidbFromRun(doc, opts()));
    expect(Object.fromEntries((out.tests ?? []).map((t) => [t.misc?.verdict, t.status]))).toEqual(expected);
    expect(KCIDB_STATUS).toEqual(expected);
    for (const t of out.tests ?? []) {
      expect(KCIDB_STATUSES).toContain(t.status);
      expect(t.misc?.reason).toBe(`why ${String(t.misc?.verdict)}`);
      const expectedFailure = t.misc?.verdict === "xfail" || t.misc?.verdict === "xpass";
      expect(t.misc?.expected_failure, String(t.misc?.verdict)).toBe(expectedFailure ? true : undefined);
    }
  });
});

describe("tests: paths, ids, attempts, evidence", () => {
  it("a scenario id becomes a path KCIDB accepts", () => {
    expect(testPath("memfd-basic", "arm64")).toBe("kho.memfd-basic.arm64");
    expect(testPath("selftest:luo/basic.c", "x86_64")).toBe("kho.selftest_luo_basic_c.x86_64");
    expect(testPath("", "x86_64")).toBe("kho._.x86_64");
  });

  it("repeated runs keep the path, with the attempt in misc and a unique id", async () => {
    const doc: RunReportDoc = {
      ...(await realDoc()),
      results: [1, 2].map((attempt) =>
        result({ id: "memfd-basic", verdict: attempt === 1 ? "pass" : "fail", attempt }),
      ),
    };
    const tests = validateKcidb(kcidbFromRun(doc, opts())).tests ?? [];
    expect(tests.map((t) => t.path)).toEqual(["kho.memfd-basic.x86_64", "kho.memfd-basic.x86_64"]);
    expect(tests.map((t) => t.id)).toEqual([
      `kho:${RUN_ID}/x86_64/memfd-basic/run1`,
      `kho:${RUN_ID}/x86_64/memfd-basic/run2`,
    ]);
    expect(tests.map((t) => t.misc?.attempt)).toEqual([1, 2]);
  });

  it("evidence: the first lines in misc, the whole (without NUL) as log_excerpt", async () => {
    const evidence = Array.from({ length: 30 }, (_, i) => `line ${i}${i === 3 ? "\0" : ""}`);
    const doc: RunReportDoc = {
      ...(await realDoc()),
      results: [result({ id: "chain-memfd", verdict: "fail", reason: "Oops", evidence })],
    };
    const [t] = validateKcidb(kcidbFromRun(doc, opts())).tests ?? [];
    expect(t?.misc?.evidence).toHaveLength(20);
    expect(t?.log_excerpt?.split("\n")).toHaveLength(30);
    expect(t?.log_excerpt).toContain("line 3\\0");
  });

  it("kernel sources: a git commit gives git_commit_hash; arches built from one source share a checkout", async () => {
    const sha = "0123456789abcdef0123456789abcdef01234567";
    expect(sourceParts(`git ${sha}+dirty-abcdef012345`)).toEqual({
      kind: "git",
      commit: sha,
      dirty: "abcdef012345",
    });
    expect(sourceParts("linux-source-7.2 7.2.13-1 + kho-debug.patch+luo.patch (0a1b2c3d4e5f)")).toEqual({
      kind: "package",
      packageName: "linux-source-7.2",
      packageVersion: "7.2.13-1",
      patches: ["kho-debug.patch", "luo.patch"],
      patchesId: "0a1b2c3d4e5f",
    });
    expect(sourceParts("files 0123456789abcdef").kind).toBe("other");

    const base = await realDoc();
    const [x86] = base.arches;
    if (!x86) throw new Error("the fixture has no arch");
    const kernel = { ...x86.kernel, source: `git ${sha}` };
    const doc: RunReportDoc = {
      ...base,
      arches: [
        { ...x86, kernel },
        { ...x86, arch: "arm64", kernel: { ...kernel, release: "7.2.13-arm64" } },
      ],
      results: [result({ id: "a", verdict: "pass" }), result({ id: "a", arch: "arm64", verdict: "pass" })],
    };
    const out = validateKcidb(kcidbFromRun(doc, opts()));
    expect(out.checkouts).toHaveLength(1);
    expect(out.checkouts?.[0]).toMatchObject({
      git_commit_hash: sha,
      misc: { releases: ["7.2.13", "7.2.13-arm64"] },
    });
    expect(out.builds?.map((b) => [b.architecture, b.checkout_id])).toEqual([
      ["x86_64", out.checkouts?.[0]?.id],
      ["arm64", out.checkouts?.[0]?.id],
    ]);
  });
});

describe("an arch whose setup failed", () => {
  it("is a FAIL build with its message, its tests MISS, and the document validates", async () => {
    const base = await realDoc();
    const failure: SetupFailure = {
      arch: "arm64",
      stage: "kernel",
      message: "the arm64 kernel build failed: see build.log",
      evidence: ["make: *** [Makefile:1234: vmlinux] Error 2"],
      notRun: 1,
    };
    const doc: RunReportDoc = {
      ...base,
      setupFailures: [failure],
      results: [
        ...base.results,
        result({
          id: "exec",
          arch: "arm64",
          verdict: "notrun",
          reason: "not run: the arm64 setup (kernel) failed",
          phaseMs: {},
          totalMs: 0,
          notRunBecause: { setupArch: "arm64", stage: "kernel" },
        }),
      ],
    };
    const out = validateKcidb(kcidbFromRun(doc, opts()));
    const unknown = `kho:${RUN_ID}/unknown-source`;
    expect(out.checkouts?.map((c) => c.id)).toContain(unknown);
    expect(out.builds?.map((b) => [b.architecture, b.status])).toEqual([
      ["x86_64", "PASS"],
      ["arm64", "FAIL"],
    ]);
    const failed = out.builds?.[1];
    expect(failed).toMatchObject({
      id: `kho:${RUN_ID}/arm64`,
      checkout_id: unknown,
      comment: "the arm64 setup failed (kernel): the arm64 kernel build failed: see build.log",
      log_excerpt: "make: *** [Makefile:1234: vmlinux] Error 2",
      misc: { stage: "kernel", message: failure.message, evidence: failure.evidence, not_run: 1 },
    });
    const missed = out.tests?.find((t) => t.build_id === failed?.id);
    expect(missed).toMatchObject({
      path: "kho.exec.arm64",
      status: "MISS",
      duration: 0,
      environment: { comment: "vm (no guest: the arm64 setup failed)" },
      misc: { not_run_because: { setupArch: "arm64", stage: "kernel" } },
    });
  });
});

describe("the schema refuses a broken document with a sentence naming the field", () => {
  const valid = async (): Promise<KcidbDoc> => structuredClone(kcidbFromRun(await realDoc(), opts()));
  type Json = Record<string, unknown>;
  const firstTest = (d: KcidbDoc) => (d.tests as Json[])[0] as Json;

  it("a valid document passes unchanged", async () => {
    const d = await valid();
    expect(validateKcidb(d)).toEqual(d);
  });

  it("a wrong status", async () => {
    const d = await valid();
    firstTest(d).status = "OK";
    expect(refusal(() => validateKcidb(d))).toBe(
      'the KCIDB document is not valid KCIDB v5.3: tests[0].status should be FAIL|ERROR|MISS|PASS|DONE|SKIP, got "OK"',
    );
  });

  it("a missing version, and a version of another major", async () => {
    const d = (await valid()) as Json;
    delete d.version;
    expect(refusal(() => validateKcidb(d, "kcidb.json"))).toBe(
      "kcidb.json is not valid KCIDB v5.3: version should be an object, got missing",
    );
    d.version = { major: 4, minor: 3 };
    expect(refusal(() => validateKcidb(d))).toMatch(/: version\.major should be 5, got 4$/);
    d.version = { major: 5, minor: 4 };
    expect(refusal(() => validateKcidb(d))).toMatch(/: version\.minor/);
  });

  it("an id whose origin is not [a-z0-9_], and one with no origin", async () => {
    const d = await valid();
    firstTest(d).id = "KHO:run/x86_64/exec";
    expect(refusal(() => validateKcidb(d))).toMatch(
      /: tests\[0\]\.id: should be an id "<origin>:<id>" whose origin is of \[a-z0-9_\] characters, got "KHO:run\/x86_64\/exec"$/,
    );
    const e = await valid();
    (e.builds as Json[])[0] = { ...(e.builds as Json[])[0], checkout_id: "5d49d939d2be337a" };
    expect(refusal(() => validateKcidb(e))).toMatch(/: builds\[0\]\.checkout_id: should be an id/);
  });

  it("a path with characters KCIDB paths do not allow", async () => {
    const d = await valid();
    firstTest(d).path = "kho.memfd basic.x86_64";
    expect(refusal(() => validateKcidb(d))).toMatch(
      /: tests\[0\]\.path: should be a dot-separated path of \[a-zA-Z0-9_-\] names \(or empty\), got "kho\.memfd basic\.x86_64"$/,
    );
    firstTest(d).path = "kho..x86_64";
    expect(refusal(() => validateKcidb(d))).toMatch(/tests\[0\]\.path/);
  });

  it("a property the schema does not have, at the top, in a test and in its environment", async () => {
    const d = (await valid()) as Json;
    d.runs = [];
    expect(refusal(() => validateKcidb(d))).toMatch(/: runs is not a property KCIDB v5\.3 allows there$/);
    const e = await valid();
    firstTest(e).verdict = "fail";
    expect(refusal(() => validateKcidb(e))).toMatch(
      /: tests\[0\]\.verdict is not a property KCIDB v5\.3 allows there$/,
    );
    const f = await valid();
    (firstTest(f).environment as Json).qemu = "10.0.2";
    expect(refusal(() => validateKcidb(f))).toMatch(/: tests\[0\]\.environment\.qemu is not a property/);
  });

  it("other fields: a duration that is no number, a start time that is no RFC 3339 time, a URL that is none, a null", async () => {
    const cases: [(t: Json) => void, RegExp][] = [
      [(t) => (t.duration = "8.2 s"), /tests\[0\]\.duration should be a number, got "8\.2 s"/],
      [(t) => (t.start_time = "2026-12-05"), /tests\[0\]\.start_time: should be an RFC 3339 date-time/],
      [(t) => (t.log_url = "x86_64/exec/console.log"), /tests\[0\]\.log_url: should be a URI/],
      [
        (t) => (t.output_files = [{ name: "a/b", url: "file:///a/b" }]),
        /tests\[0\]\.output_files\[0\]\.name/,
      ],
      [(t) => (t.comment = null), /tests\[0\]\.comment should be a string, got null/],
      [(t) => (t.misc = []), /tests\[0\]\.misc should be an object, got \[\]/],
    ];
    for (const [breakIt, message] of cases) {
      const d = await valid();
      breakIt(firstTest(d));
      expect(refusal(() => validateKcidb(d))).toMatch(message);
    }
  });
});
