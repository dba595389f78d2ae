// `npm run bench`: the kernel's KHO selftest flow (vmtest.sh) against the harness's scenarios,
// timed per phase; figures on stdout and as JSON in --out. The logic lives in src/bench/.
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { Command } from "commander";
import { ARCH_NAMES, type ArchName } from "../src/arch.js";
import { benchFailed, runBench } from "../src/bench/bench.js";
import { formatBench } from "../src/bench/format.js";
import { selectScenarios } from "../src/scenarios/index.js";
import { stderrLogger } from "../src/util/log.js";
import { action, archOption, intOption } from "./cli-support.js";

interface BenchCli {
  arch: ArchName[];
  repeat: number;
  out: string;
  scenario: string;
  append?: string;
}

await new Command("bench")
  .description("time the kernel's KHO selftest flow (vmtest.sh) against the harness's own scenarios")
  .option("--arch <arch>", "x86_64, arm64 or all", archOption, [...ARCH_NAMES])
  .option("--repeat <n>", "runs of every flow per arch", intOption, 3)
  .option("--out <file>", "JSON figures", "bench-results.json")
  .option(
    "--scenario <ids>",
    "harness scenarios to compare ('none': the raw flow only)",
    "test-kho,memfd-basic",
  )
  .option("--append <params>", "extra kernel parameters for every flow (experiments, e.g. quiet)")
  .showHelpAfterError()
  .action(
    action(async (opts: BenchCli) => {
      const report = await runBench({
        arches: opts.arch,
        scenarios: opts.scenario === "none" ? [] : selectScenarios(opts.scenario),
        repeat: opts.repeat,
        log: stderrLogger,
        ...(opts.append ? { append: opts.append } : {}),
      });
      const out = resolve(opts.out);
      await writeFile(out, JSON.stringify(report, null, 2) + "\n");
      process.stdout.write(`${formatBench(report)}\n\nfigures: ${out}\n`);
      return benchFailed(report) ? 1 : 0;
    }),
  )
  .parseAsync(process.argv);
