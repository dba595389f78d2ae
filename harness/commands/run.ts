import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { KtapWriter } from "../../src/run/ktap.js";
import { junitXml, summaryTable, writeRunReport } from "../../src/run/report.js";
import { runScenarios } from "../../src/run/runner.js";
import { exitCodeFor, findFlakes } from "../../src/run/verdict.js";
import { chainScenario, DEFAULT_CHAIN_HOPS } from "../../src/scenarios/chain.js";
import { SCENARIOS, selectScenarios } from "../../src/scenarios/index.js";
import { SELFTEST_SCENARIOS } from "../../src/scenarios/selftests.js";
import { twoStageScenario } from "../../src/scenarios/two-stage.js";
import type { Scenario } from "../../src/scenarios/types.js";
import { formatDuration, stderrLogger } from "../../src/util/log.js";
import { action, archOption, collect, intOption } from "../cli-support.js";

interface BootOptions {
  arch: ArchName[];
  jobs?: number;
  repeat?: number;
  kernel?: string;
  nextKernel?: string;
  out?: string;
}

function bootOptions(cmd: Command): Command {
  return cmd
    .option("--arch <arch>", "x86_64, arm64 or all", archOption, [...ARCH_NAMES])
    .option("--kernel <file>", "boot this prebuilt image instead of building (one arch)")
    .option("--next-kernel <file>", "kexec into this image instead of the booted one")
    .option("--out <dir>", "artifacts folder (default out/runs/<time>)")
    .option("--jobs <n>", "guests running at once (default 1)", intOption)
    .option("--repeat <n>", "run every scenario n times and count flakes (default 1)", intOption);
}

/** Runs scenarios on every asked arch and reports them: KTAP on stdout, summary, JSON, JUnit. */
async function runAndReport(scenarios: readonly Scenario[], opts: BootOptions): Promise<number> {
  if (opts.kernel && opts.arch.length !== 1) {
    throw new HarnessError("--kernel names one image: give its arch with --arch x86_64 or --arch arm64");
  }
  const outDir = resolve(opts.out ?? join("out", "runs", new Date().toISOString().replace(/[:.]/g, "-")));
  await mkdir(outDir, { recursive: true });
  const ktap = new KtapWriter(
    (l) => process.stdout.write(`${l}\n`),
    scenarios.length * opts.arch.length * (opts.repeat ?? 1),
  );
  const started = performance.now();
  const report = await runScenarios({
    arches: opts.arch,
    scenarios,
    outDir,
    log: stderrLogger,
    onResult: (r) => ktap.result(r),
    ...(opts.jobs ? { jobs: opts.jobs } : {}),
    ...(opts.repeat ? { repeat: opts.repeat } : {}),
    ...(opts.kernel ? { kernel: resolve(opts.kernel) } : {}),
    ...(opts.nextKernel ? { nextKernel: resolve(opts.nextKernel) } : {}),
  });
  const wall = performance.now() - started;
  const written = await writeRunReport(outDir, report, { wallMs: wall, argv: process.argv.slice(1) });
  await writeFile(join(outDir, "junit.xml"), junitXml(report));
  const counts = (v: string) => report.results.filter((r) => r.verdict === v).length;
  ktap.diagnostic(
    `Totals: pass:${counts("pass")} fail:${counts("fail")} xfail:${counts("xfail")} xpass:${counts("xpass")} skip:${counts("skip")} error:${counts("error")}`,
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
  process.stderr.write(
    `\n${summaryTable(report)}\n\nwall time ${formatDuration(wall)}; report ${written.json}, summary ${written.html}\n`,
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
        s.id === "chain-memfd" && opts.chain ? chainScenario(opts.chain) : s,
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
