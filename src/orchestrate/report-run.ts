// What every run command does around its run: host tools first, the run folder, KTAP on stdout
// as results arrive, then report.json, the summary pages and JUnit in the run folder, the
// totals and flakes as KTAP diagnostics, the summary table on stderr, and the kselftest exit code.
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ensureHostTools } from "../host/install.js";
import { KTAP_FILE, KtapWriter } from "../report/ktap.js";
import {
  exitCodeFor,
  findFlakes,
  type RunReport,
  type ScenarioResult,
  type SetupFailure,
} from "../report/verdict.js";
import { junitXml, summaryTable, writeRunReport } from "../report/write.js";
import { formatDuration, stderrLogger } from "../util/log.js";

/** `out/runs/<time>` unless the user named a folder. */
export function runFolder(out: string | undefined): string {
  return resolve(out ?? join("out", "runs", new Date().toISOString().replace(/[:.]/g, "-")));
}

/**
 * The reporting every run command shares: KTAP as results arrive, then the JSON report, summary
 * pages and JUnit in the run folder, totals, flakes, the summary table and `epilogue`'s lines.
 */
export async function reportRun<R extends RunReport>(
  total: number,
  opts: { out?: string; repeat?: number },
  execute: (
    outDir: string,
    onResult: (r: ScenarioResult) => void,
    onSetupFailure: (f: SetupFailure) => void,
  ) => Promise<R>,
  epilogue: (report: R) => string = () => "",
): Promise<number> {
  // Before any scenario: a fresh machine gets its tools installed (as root) or one sentence.
  await ensureHostTools(stderrLogger, `kho ${process.argv[2] ?? "run"}`);
  const outDir = runFolder(opts.out);
  await mkdir(outDir, { recursive: true });
  // KTAP on stdout as results arrive, and the same lines in the run folder.
  const ktapLines: string[] = [];
  const ktap = new KtapWriter((l) => {
    ktapLines.push(l);
    process.stdout.write(`${l}\n`);
  }, total);
  const started = performance.now();
  const report = await execute(
    outDir,
    (r) => ktap.result(r),
    (f) => ktap.setupFailure(f),
  );
  const wall = performance.now() - started;
  const written = await writeRunReport(outDir, report, { wallMs: wall, argv: process.argv.slice(1) });
  await writeFile(join(outDir, "junit.xml"), junitXml(report));
  const counts = (v: string) => report.results.filter((r) => r.verdict === v).length;
  ktap.diagnostic(
    `Totals: pass:${counts("pass")} fail:${counts("fail")} xfail:${counts("xfail")} xpass:${counts("xpass")} skip:${counts("skip")} error:${counts("error")} notrun:${counts("notrun")}${report.setupFailures.length ? ` setup-failures:${report.setupFailures.length}` : ""}`,
  );
  const flakes = findFlakes(report.results);
  if ((opts.repeat ?? 1) > 1) {
    ktap.diagnostic(
      `Flaky: ${flakes.length}${flakes
        .map(
          (f) =>
            ` ${f.id}.${f.arch} (${Object.entries(f.verdicts)
              .map(([v, n]) => `${n} ${v}`)
              .join(", ")})`,
        )
        .join(";")}`,
    );
  }
  await writeFile(join(outDir, KTAP_FILE), `${ktapLines.join("\n")}\n`);
  const extra = epilogue(report);
  process.stderr.write(
    `\n${summaryTable(report)}\n${extra ? `\n${extra}\n` : ""}\nwall time ${formatDuration(wall)}; report ${written.json}, summary ${written.html}\n`,
  );
  return exitCodeFor(report.results);
}
