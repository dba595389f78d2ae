import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { ensureHostTools } from "../../src/host/install.js";
import { KtapWriter } from "../../src/report/ktap.js";
import { junitXml, summaryTable, writeRunReport } from "../../src/report/write.js";
import { pairTable, runCross, seriesPairs } from "../../src/orchestrate/cross.js";
import { defaultGuestJobs, runScenarios, type RunReport } from "../../src/orchestrate/runner.js";
import { exitCodeFor, findFlakes, type ScenarioResult, type SetupFailure } from "../../src/report/verdict.js";
import { DEFAULT_CHAIN_HOPS } from "../../src/scenarios/chain.js";
import { withParams } from "../../src/api/scenario.js";
import { SCENARIOS, selectScenarios } from "../../src/scenarios/index.js";
import { SELFTEST_SCENARIOS } from "../../src/scenarios/selftests.js";
import { twoStageScenario } from "../../src/scenarios/two-stage.js";
import type { Scenario } from "../../src/api/scenario.js";
import { formatDuration, stderrLogger } from "../../src/util/log.js";
import { action, archOption, BASE_HELP, collect, intOption } from "../cli-support.js";
import { parseBase } from "../../src/kernel/build.js";

interface BootOptions {
  arch: ArchName[];
  jobs?: number;
  repeat?: number;
  kernel?: string;
  nextKernel?: string;
  out?: string;
  isolate?: boolean;
  base?: string;
}

const JOBS_HELP = `guests running at once (default ${defaultGuestJobs()} here: one per core, 7 GiB of RAM each)`;

function bootOptions(cmd: Command): Command {
  return cmd
    .option("--arch <arch>", "x86_64, arm64 or all", archOption, [...ARCH_NAMES])
    .option("--kernel <file>", "boot this prebuilt image instead of building (one arch)")
    .option("--next-kernel <file>", "kexec into this image instead of the booted one")
    .option("--base <base>", BASE_HELP)
    .option("--out <dir>", "artifacts folder (default out/runs/<time>)")
    .option("--jobs <n>", JOBS_HELP, intOption)
    .option("--repeat <n>", "run every scenario n times and count flakes (default 1)", intOption)
    .option(
      "--isolate",
      "a fresh guest for every scenario (by default scenarios that can share one guest and one kexec do)",
    );
}

/** Runs scenarios on every asked arch and reports them: KTAP on stdout, summary, JSON, JUnit. */
function runAndReport(scenarios: readonly Scenario[], opts: BootOptions): Promise<number> {
  if (opts.kernel && opts.arch.length !== 1) {
    throw new HarnessError("--kernel names one image: give its arch with --arch x86_64 or --arch arm64");
  }
  return reportRun(
    scenarios.length * opts.arch.length * (opts.repeat ?? 1),
    opts,
    (outDir, onResult, onSetupFailure) =>
      runScenarios({
        arches: opts.arch,
        scenarios,
        outDir,
        log: stderrLogger,
        onResult,
        onSetupFailure,
        jobs: opts.jobs ?? defaultGuestJobs(),
        ...(opts.repeat ? { repeat: opts.repeat } : {}),
        ...(opts.isolate ? { isolate: true } : {}),
        ...(opts.kernel ? { kernel: resolve(opts.kernel) } : {}),
        ...(opts.base ? { base: parseBase(opts.base) } : {}),
        ...(opts.nextKernel ? { nextKernel: resolve(opts.nextKernel) } : {}),
      }),
  );
}

/**
 * The reporting every run command shares: KTAP as results arrive, then the JSON report, summary
 * pages and JUnit in the run folder, totals, flakes, the summary table and `epilogue`'s lines.
 */
async function reportRun<R extends RunReport>(
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
  const outDir = resolve(opts.out ?? join("out", "runs", new Date().toISOString().replace(/[:.]/g, "-")));
  await mkdir(outDir, { recursive: true });
  const ktap = new KtapWriter((l) => process.stdout.write(`${l}\n`), total);
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
  const extra = epilogue(report);
  process.stderr.write(
    `\n${summaryTable(report)}\n${extra ? `\n${extra}\n` : ""}\nwall time ${formatDuration(wall)}; report ${written.json}, summary ${written.html}\n`,
  );
  return exitCodeFor(report.results);
}

export function registerRun(program: Command): void {
  bootOptions(
    program
      .command("run")
      .description(
        "run scenarios on QEMU guests (default: all scenarios, both arches, the harness's kernels)",
      )
      .option("--scenario <ids>", "comma-separated scenario ids or globs (see 'kho list')")
      .option("--chain <n>", `kexecs in a row for chain-memfd (default ${DEFAULT_CHAIN_HOPS})`, intOption),
  ).action(
    action((opts: BootOptions & { scenario?: string; chain?: number }) => {
      const chosen = selectScenarios(opts.scenario).map((s) =>
        s.id === "chain-memfd" && opts.chain ? withParams(s, { hops: opts.chain }) : s,
      );
      return runAndReport(chosen, opts);
    }),
  );

  bootOptions(
    program
      .command("selftests")
      .description("run the kernel's liveupdate selftests across kexec (stage 1, kexec, stage 2)")
      .option("--test <names>", "comma-separated test names (default: all)"),
  ).action(
    action((opts: BootOptions & { test?: string }) => {
      const names = opts.test?.split(",").map((t) => t.trim());
      const chosen = names
        ? SELFTEST_SCENARIOS.filter((s) => names.includes(s.id.replace(/^selftest-/, "")))
        : SELFTEST_SCENARIOS;
      const unknown = names?.filter((n) => !SELFTEST_SCENARIOS.some((s) => s.id === `selftest-${n}`)) ?? [];
      if (unknown.length) {
        throw new HarnessError(
          `unknown selftest ${unknown.join(", ")} (known: ${SELFTEST_SCENARIOS.map((s) => s.id.replace(/^selftest-/, "")).join(", ")})`,
        );
      }
      return runAndReport(chosen, opts);
    }),
  );

  bootOptions(
    program
      .command("exec")
      .description("run your own two-stage test: stage 1, kexec (one per extra --stage), the next stage...")
      .requiredOption("--stage <cmd>", "a shell command for one boot; repeat for each boot (2+)", collect, [])
      .option(
        "--upload <file>",
        "copy a host file to /root/ in the guest before stage 1 (repeatable)",
        collect,
        [],
      ),
  ).action(
    action((opts: BootOptions & { stage: string[]; upload: string[] }) => {
      if (opts.stage.length < 2)
        throw new HarnessError("give at least two --stage commands: one before and one after the kexec");
      return runAndReport(
        [
          twoStageScenario(
            opts.stage,
            opts.upload.map((f) => resolve(f)),
          ),
        ],
        opts,
      );
    }),
  );

  program
    .command("cross")
    .description(
      "cross-version handover: boot the harness's kernel of one series, kexec into another's, both ways",
    )
    .option("--arch <arch>", "x86_64, arm64 or all", archOption, [...ARCH_NAMES])
    .option("--series <list>", "comma-separated Debian linux-source series", "7.2,7.3")
    .option("--scenario <ids>", "scenario ids or globs run across each pair", "test-kho,memfd-basic")
    .option("--jobs <n>", JOBS_HELP, intOption)
    .option("--out <dir>", "artifacts folder (default out/runs/<time>)")
    .action(
      action((opts: { arch: ArchName[]; series: string; scenario: string; jobs?: number; out?: string }) => {
        const series = opts.series.split(",").map((s) => s.trim());
        const pairs = seriesPairs(series);
        const scenarios = selectScenarios(opts.scenario);
        return reportRun(
          scenarios.length * opts.arch.length * pairs.length,
          opts,
          (outDir, onResult) =>
            runCross({
              arches: opts.arch,
              series,
              scenarios,
              outDir,
              log: stderrLogger,
              onResult,
              jobs: opts.jobs ?? defaultGuestJobs(),
            }),
          (report) => pairTable(report.pairs),
        );
      }),
    );

  program
    .command("list")
    .description("list the scenarios and selftests: id, what they need, what they check")
    .action(
      action(() => {
        for (const s of [...SCENARIOS, ...SELFTEST_SCENARIOS]) {
          process.stdout.write(`${s.id.padEnd(32)} needs ${s.needs.join(",").padEnd(30)} ${s.description}\n`);
        }
        return Promise.resolve(0);
      }),
    );
}
