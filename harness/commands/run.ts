import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { KtapWriter } from "../../src/run/ktap.js";
import { junitXml, summaryTable, writeJsonReport } from "../../src/run/report.js";
import { runScenarios } from "../../src/run/runner.js";
import { exitCodeFor } from "../../src/run/verdict.js";
import { SCENARIOS, selectScenarios } from "../../src/scenarios/index.js";
import { formatDuration, stderrLogger } from "../../src/util/log.js";
import { action, archOption } from "../cli-support.js";

interface RunOptions {
  arch: ArchName[];
  scenario?: string;
  kernel?: string;
  nextKernel?: string;
  out?: string;
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("run scenarios on QEMU guests (default: all scenarios, both arches, the harness's kernels)")
    .option("--arch <arch>", "x86_64, arm64 or all", archOption, [...ARCH_NAMES])
    .option("--scenario <ids>", "comma-separated scenario ids or globs (see 'kho list')")
    .option("--kernel <file>", "boot this prebuilt image instead of building (one arch)")
    .option("--next-kernel <file>", "kexec into this image instead of the booted one")
    .option("--out <dir>", "artifacts folder (default out/runs/<time>)")
    .action(
      action(async (opts: RunOptions) => {
        if (opts.kernel && opts.arch.length !== 1) {
          throw new HarnessError(
            "--kernel names one image: give its arch with --arch x86_64 or --arch arm64",
          );
        }
        const scenarios = selectScenarios(opts.scenario);
        const outDir = resolve(
          opts.out ?? join("out", "runs", new Date().toISOString().replace(/[:.]/g, "-")),
        );
        await mkdir(outDir, { recursive: true });
        const ktap = new KtapWriter(
          (l) => process.stdout.write(`${l}\n`),
          scenarios.length * opts.arch.length,
        );
        const started = performance.now();
        const report = await runScenarios({
          arches: opts.arch,
          scenarios,
          outDir,
          log: stderrLogger,
          onResult: (r) => ktap.result(r),
          ...(opts.kernel ? { kernel: resolve(opts.kernel) } : {}),
          ...(opts.nextKernel ? { nextKernel: resolve(opts.nextKernel) } : {}),
        });
        const wall = performance.now() - started;
        const jsonPath = await writeJsonReport(outDir, report, wall, process.argv.slice(1));
        await writeFile(join(outDir, "junit.xml"), junitXml(report));
        const counts = (v: string) => report.results.filter((r) => r.verdict === v).length;
        ktap.diagnostic(
          `Totals: pass:${counts("pass")} fail:${counts("fail")} xfail:${counts("xfail")} xpass:${counts("xpass")} skip:${counts("skip")} error:${counts("error")}`,
        );
        process.stderr.write(
          `\n${summaryTable(report)}\n\nwall time ${formatDuration(wall)}; report ${jsonPath}\n`,
        );
        return exitCodeFor(report.results);
      }),
    );

  program
    .command("list")
    .description("list the scenarios: id, what they need, what they check")
    .action(
      action(async () => {
        for (const s of SCENARIOS) {
          process.stdout.write(`${s.id.padEnd(16)} needs ${s.needs.join(",").padEnd(32)} ${s.description}\n`);
        }
        return Promise.resolve(0);
      }),
    );
}
