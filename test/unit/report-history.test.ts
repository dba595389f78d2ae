// `kho report history`: the history of five run folders derived from real runs
// (test/fixtures/reports/history/, see the README there), and of small made-up reports where a
// rule needs a case the real runs do not have.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HarnessError } from "../../src/errors.js";
import {
  buildHistory,
  HISTORY_SCHEMA,
  HistorySchema,
  kernelKey,
  orderRuns,
  writeHistory,
  type History,
  type HistoryInput,
  type HistoryRow,
} from "../../src/report/history.js";
import { renderHistoryHtml } from "../../src/report/history-html.js";
import {
  BAD_INPUT_EXIT,
  loadReport,
  unknownHost,
  type ArchEntry,
  type KernelIdentity,
  type ReportResult,
  type RunReportDoc,
} from "../../src/report/schema.js";
import type { Verdict } from "../../src/report/verdict.js";
import { assertBalancedXml } from "./helpers/report-asserts.js";

const REPORTS = join(import.meta.dirname, "..", "fixtures", "reports");
const HISTORY = join(REPORTS, "history");
const RUN_DIRS = [1, 2, 3, 4, 5].map((n) => join(HISTORY, `run-${n}`));

async function input(dir: string): Promise<HistoryInput> {
  return { doc: (await loadReport(dir)).doc, dir };
}

function row(history: History, id: string, arch: string): HistoryRow {
  const r = history.rows.find((x) => x.id === id && x.arch === arch);
  if (!r) throw new Error(`no row ${id}.${arch}`);
  return r;
}

const series = (r: HistoryRow | History["arches"][number], phase: string) =>
  r.phases.find((p) => p.phase === phase)?.ms;

// --- Made-up reports, for the rules the real runs do not exercise ----------------------------------

function kernel(over: Partial<KernelIdentity> = {}): KernelIdentity {
  return {
    image: "/cache/kernels/0123456789abcdef/bzImage",
    imageSha256: null,
    release: "7.2.13",
    next: "/cache/kernels/0123456789abcdef/bzImage",
    configSha256: null,
    configOptions: null,
    source: null,
    buildKey: null,
    ...over,
  };
}

function arch(k: KernelIdentity, name: ArchEntry["arch"] = "x86_64"): ArchEntry {
  return {
    arch: name,
    accel: "tcg",
    accelReason: null,
    qemu: { binary: "qemu-system-x86_64", version: null, banner: null },
    kernel: k,
    phaseMs: {},
  };
}

function doc(
  startedAt: string | null,
  results: ReportResult[],
  arches: ArchEntry[] = [arch(kernel())],
): RunReportDoc {
  return {
    schema: "kho-harness/run-report@2",
    startedAt,
    startedFrom: "kho run",
    wallMs: 1000,
    exitCode: 0,
    totals: { pass: 0, fail: 0, xfail: 0, xpass: 0, skip: 0, error: 0, notrun: 0 },
    host: unknownHost("h"),
    arches,
    setupFailures: [],
    results,
  };
}

const result = (id: string, verdict: Verdict, attempt?: number): ReportResult => ({
  id,
  arch: "x86_64",
  verdict,
  ...(attempt ? { attempt } : {}),
  reason: `${id} ${verdict}`,
  phaseMs: { boot: 1000 },
  totalMs: 2000,
});

/** One made-up run per entry, a day apart; a null verdict leaves the scenario out. */
function sequence(verdicts: readonly (Verdict | null)[]): HistoryInput[] {
  return verdicts.map((v, i) => ({
    doc: doc(`2026-12-0${i + 1}T00:00:00.000Z`, v ? [result("s", v)] : [result("other", "pass")]),
    dir: `/runs/${i}`,
  }));
}

// --- The tests -------------------------------------------------------------------------------------

describe("kho report history over runs derived from real ones", () => {
  let history: History;
  beforeAll(async () => {
    // Given out of order: the history orders them by start time.
    const inputs = await Promise.all([5, 3, 1, 4, 2].map((n) => input(join(HISTORY, `run-${n}`))));
    history = buildHistory(inputs);
  });

  it("orders the runs by start time and keeps one column per run", () => {
    expect(history.schema).toBe(HISTORY_SCHEMA);
    expect(history.runs.map((r) => r.dir)).toEqual(RUN_DIRS);
    expect(history.runs.map((r) => r.startedAt)).toEqual([
      "2026-12-05T21:36:50.230Z",
      "2026-12-06T01:41:53.754Z",
      "2026-12-06T04:20:57.025Z",
      "2026-12-06T05:21:23.949Z",
      "2026-12-06T06:17:11.293Z",
    ]);
    expect(history.rows).toHaveLength(10);
    for (const r of history.rows) expect(r.cells).toHaveLength(5);
    expect(history.rows.map((r) => `${r.arch} ${r.id}`)).toEqual([
      "x86_64 memfd-basic",
      "x86_64 memfd-unknown-token",
      "x86_64 pages-dma-order9",
      "x86_64 pages-next-max-order",
      "x86_64 test-kho",
      "arm64 memfd-basic",
      "arm64 memfd-unknown-token",
      "arm64 pages-dma-order9",
      "arm64 pages-next-max-order",
      "arm64 test-kho",
    ]);
  });

  it("labels each run's kernel per arch, telling two kernels of one release apart", () => {
    expect(
      history.runs.map((r) => r.kernels.map((k) => `${k.arch} ${k.label}${k.changed ? " *" : ""}`)),
    ).toEqual([
      ["x86_64 7.2.13 (ff770923)"],
      ["x86_64 7.2.13 (f0b850d9) *"],
      ["arm64 7.2.13 (f06a8773)"],
      ["x86_64 7.2.13 (ff770923) *", "arm64 7.2.13 (68b1575d) *"],
      ["x86_64 7.2.13 (ff770923)", "arm64 7.2.13 (68b1575d)"],
    ]);
    expect(history.kernels.map((k) => [k.arch, k.label, k.runs, k.buildKey])).toEqual([
      ["x86_64", "7.2.13 (ff770923)", [0, 3, 4], "18609dc21db0911f"],
      ["x86_64", "7.2.13 (f0b850d9)", [1], "06ff9e48bf17e11a"],
      ["arm64", "7.2.13 (f06a8773)", [2], "c89962e52eeea559"],
      ["arm64", "7.2.13 (68b1575d)", [3, 4], "1f69509c5268b3c5"],
    ]);
  });

  it("finds the first run of each new failure, with the kernel it ran", () => {
    const next = row(history, "pages-next-max-order", "x86_64");
    expect(next.cells.map((c) => c.state)).toEqual(["absent", "fail", "absent", "pass", "flaky"]);
    expect(next.cells.map((c) => c.newFailure)).toEqual([false, true, false, false, true]);
    expect(next.newFailures).toEqual([
      {
        run: 1,
        kernel: "7.2.13 (f0b850d9)",
        state: "fail",
        reason: expect.stringContaining("test_kho: KHO restore failed") as unknown,
      },
      { run: 4, kernel: "7.2.13 (ff770923)", state: "flaky", reason: expect.any(String) as unknown },
    ]);
    expect(next.failingAtStart).toBe(false);
    // Failing in the first run: when it began is before the history, so no "new failure".
    const token = row(history, "memfd-unknown-token", "x86_64");
    expect(token.cells.map((c) => c.state)).toEqual(["error", "pass", "absent", "pass", "pass"]);
    expect(token.failingAtStart).toBe(true);
    expect(token.newFailures).toEqual([]);
    // Nothing else is new; an expected failure (xfail) is not a failure.
    expect(history.rows.filter((r) => r.newFailures.length).map((r) => `${r.id}.${r.arch}`)).toEqual([
      "pages-next-max-order.x86_64",
    ]);
    expect(row(history, "pages-dma-order9", "arm64").cells.map((c) => c.state)).toEqual([
      "absent",
      "absent",
      "xfail",
      "xfail",
      "absent",
    ]);
  });

  it("shows a repeated run's attempts, flaky when they disagree, and the flake rates", () => {
    const next = row(history, "pages-next-max-order", "x86_64");
    const flaky = next.cells[4];
    expect(flaky?.attempts).toEqual(["pass", "fail", "pass"]);
    expect(flaky?.failing).toBe(true);
    expect(flaky?.reason).toMatch(/^#1 pass: .*; #2 fail: made-up for the history fixture: .*; #3 pass: /);
    expect(next.flake).toEqual({
      presentRuns: 3,
      flakyRuns: 1,
      flakyRunRate: 1 / 3,
      outcomes: 5, // fail | pass | pass fail pass
      switches: 3,
      switchRate: 3 / 4,
    });
    expect(row(history, "memfd-unknown-token", "x86_64").flake).toEqual({
      presentRuns: 4,
      flakyRuns: 0,
      flakyRunRate: 0,
      outcomes: 4,
      switches: 1,
      switchRate: 1 / 3,
    });
    expect(row(history, "memfd-basic", "arm64").flake).toMatchObject({
      flakyRuns: 0,
      switches: 0,
      switchRate: 0,
    });
  });

  it("gives each phase's time in each run: the median of a repeated run's attempts, the total last", async () => {
    const testKho = row(history, "test-kho", "x86_64");
    expect(testKho.phases.map((p) => p.phase)).toEqual(["boot", "kexec", "checks", "total"]);
    const [run1, run2, , run4] = await Promise.all(RUN_DIRS.map(async (d) => (await loadReport(d)).doc));
    const kexecOf = (d: RunReportDoc | undefined) =>
      d?.results.find((r) => r.id === "test-kho" && r.arch === "x86_64")?.phaseMs.kexec;
    expect(series(testKho, "kexec")).toEqual([kexecOf(run1), kexecOf(run2), null, kexecOf(run4), null]);
    expect(series(testKho, "total")).toEqual([13380, 60871, null, 8123, null]);
    // The three attempts of run 5 took 15739, 15354 and 11641 ms.
    expect(series(row(history, "pages-next-max-order", "x86_64"), "total")).toEqual([
      null,
      23328,
      null,
      9491,
      15354,
    ]);
    // Per arch: summed over the arch's scenarios, with how many were timed.
    const x86 = history.arches.find((a) => a.arch === "x86_64");
    expect(x86?.scenarios).toEqual([4, 5, 0, 5, 3]);
    expect(series(x86!, "total")?.[0]).toBe(13380 + 13895 + 13527 + 16031);
    expect(x86?.phases.at(-1)?.phase).toBe("total");
    expect(history.arches.map((a) => a.arch)).toEqual(["x86_64", "arm64"]);
  });

  it("writes history.json as HistorySchema says, and the page", async () => {
    const out = await mkdtemp(join(tmpdir(), "kho-history-"));
    try {
      const written = await writeHistory([...RUN_DIRS, RUN_DIRS[0] ?? ""], join(out, "new", "dir"));
      const json: unknown = JSON.parse(await readFile(written.json, "utf8"));
      expect(HistorySchema.parse(json)).toEqual(history);
      const html = await readFile(written.html, "utf8");
      expect(html).toBe(renderHistoryHtml(history, { summaries: [] }));
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

describe("the history page", () => {
  let html: string;
  beforeAll(async () => {
    html = renderHistoryHtml(buildHistory(await Promise.all(RUN_DIRS.map(input))));
  });

  it("has the timeline with a row per scenario and arch, the new-failure marks and the kernels", () => {
    const table = /<table id="timeline">([\s\S]*?)<\/table>/.exec(html)?.[1] ?? "";
    const body = /<tbody>([\s\S]*)<\/tbody>/.exec(table)?.[1] ?? "";
    expect(body.match(/<tr>/g)).toHaveLength(10);
    expect(table.match(/<td class="cell[^"]* new"/g)).toHaveLength(2);
    expect(table.match(/<tr class="kernels">/g)).toHaveLength(2);
    expect(table).toContain("#2 FAIL on 7.2.13 (f0b850d9)");
    expect(table).toContain("#5 FLAKY on 7.2.13 (ff770923)");
    expect(html).toContain('<table id="kernels">');
    expect(html).toMatch(/K2<\/b> 7\.2\.13 \(f0b850d9\)/);
  });

  it("draws a phase chart per arch (and one per row) as well-formed inline SVG, with nothing to fetch", () => {
    const charts = [...html.matchAll(/<svg class="phase-chart"[\s\S]*?<\/svg>/g)].map((m) => m[0]);
    expect(charts).toHaveLength(2 + 10);
    for (const svg of charts) assertBalancedXml(svg);
    expect(charts[0]).toMatch(/<path d="M[\d.]+ [\d.]+ L/);
    expect(charts[0]).toContain("K2 7.2.13 (f0b850d9)");
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?\/\//i);
    expect(html).not.toMatch(/<script|@import|<link\b/i);
  });

  it("escapes what the reports say", () => {
    const inputs = sequence(["pass", "fail"]).map((i, n) =>
      n === 1 ? { ...i, doc: { ...i.doc, results: [{ ...result("s", "fail"), reason: 'a <b> & "c"' }] } } : i,
    );
    const page = renderHistoryHtml(buildHistory(inputs));
    expect(page).toContain("a &lt;b&gt; &amp; &quot;c&quot;");
    expect(page).not.toContain("a <b>");
  });
});

describe("history rules", () => {
  it("counts a failure as new after a pass, a skip or an absence, not after a failure or in the first run", () => {
    const h = buildHistory(
      sequence(["fail", "pass", "fail", "error", null, "xpass", "skip", "fail", "xfail"]),
    );
    const s = row(h, "s", "x86_64");
    expect(s.cells.map((c) => c.newFailure)).toEqual([
      false,
      false,
      true,
      false,
      false,
      true,
      false,
      true,
      false,
    ]);
    expect(s.failingAtStart).toBe(true);
    expect(s.newFailures.map((f) => [f.run, f.state])).toEqual([
      [2, "fail"],
      [5, "xpass"],
      [7, "fail"],
    ]);
    // Pass/fail outcomes: F P F F F F P (skip is neither; the absent run has none): 3 switches.
    expect(s.flake).toMatchObject({ presentRuns: 8, outcomes: 7, switches: 3, switchRate: 3 / 6 });
  });

  it("orders runs without a start time last, by folder name; a folder name that is a time counts", () => {
    const at = (startedAt: string | null, dir: string) => ({ doc: doc(startedAt, []), dir });
    const ordered = orderRuns([
      at(null, "/x/b-run"),
      at("2026-12-06T00:00:00.000Z", "/x/z"),
      at(null, "/x/a-run"),
      at(null, "/out/runs/2026-12-05T10-00-00-000Z"),
      at("2026-12-04T00:00:00.000Z", "/x/y"),
    ]);
    expect(ordered.map((r) => r.dir)).toEqual([
      "/x/y",
      "/out/runs/2026-12-05T10-00-00-000Z",
      "/x/z",
      "/x/a-run",
      "/x/b-run",
    ]);
  });

  it("labels kernels by what the report recorded, longer where eight characters do not tell them apart", async () => {
    const a = "abcdef01" + "0".repeat(56);
    const b = "abcdef01" + "1".repeat(56);
    const runs = [
      { doc: doc("2026-12-01T00:00:00.000Z", [], [arch(kernel({ imageSha256: a }))]), dir: "/r/1" },
      { doc: doc("2026-12-02T00:00:00.000Z", [], [arch(kernel({ imageSha256: b }))]), dir: "/r/2" },
      {
        doc: doc("2026-12-03T00:00:00.000Z", [], [arch(kernel({ buildKey: "18609dc21db0911f" }))]),
        dir: "/r/3",
      },
      {
        doc: doc("2026-12-04T00:00:00.000Z", [], [arch(kernel({ configSha256: "40e8ab4d8413" }))]),
        dir: "/r/4",
      },
    ];
    expect(buildHistory(runs).kernels.map((k) => k.label)).toEqual([
      "7.2.13 (abcdef010000)",
      "7.2.13 (abcdef011111)",
      "7.2.13 (build 18609dc21db0)",
      "7.2.13 (config 40e8ab4d8413)",
    ]);
    // A @1 report recorded no hash: its image's path tells it apart.
    const old = await loadReport(join(REPORTS, "x86_64-pages"));
    const k = old.doc.arches[0]?.kernel;
    expect(k && kernelKey(k)).toBe("path:7.2.13:/root/.cache/kho-harness/kernels/89b201283315291d/bzImage");
    expect(buildHistory([{ doc: old.doc, dir: old.dir }]).kernels[0]?.label).toBe(
      "7.2.13 (89b201283315291d/bzImage)",
    );
  });
});

describe("kho report history refuses", () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), "kho-history-refuse-"));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  async function refusal(p: Promise<unknown>): Promise<string> {
    const e: unknown = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(HarnessError);
    expect((e as HarnessError).exitCode).toBe(BAD_INPUT_EXIT);
    expect((e as Error).message).not.toContain("\n");
    return (e as Error).message;
  }

  it("no run folder at all, in one sentence", async () => {
    expect(await refusal(writeHistory([], out))).toBe(
      "kho report history needs at least one run folder (out/runs/<time>/), for example: kho report history out/runs/*",
    );
  });

  it("a folder that is not a run, or is not there", async () => {
    expect(await refusal(writeHistory([RUN_DIRS[0] ?? "", HISTORY], out))).toBe(
      `${HISTORY} has no report.json: is it a run folder (out/runs/<time>/)?`,
    );
    expect(await refusal(writeHistory([join(HISTORY, "run-9")], out))).toMatch(/run-9 does not exist/);
  });
});
