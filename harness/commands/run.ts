import { resolve } from "node:path";
import type { Command } from "commander";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { pairTable, runCross, seriesPairs } from "../../src/orchestrate/cross.js";
import { defaultGuestJobs, runScenarios } from "../../src/orchestrate/runner.js";
import { reportRun } from "../../src/orchestrate/report-run.js";
import { runOnTarget } from "../../src/orchestrate/target-run.js";
import { parseTargetUrl } from "../../src/target/url.js";
import {
  describeShard,
  loadDurationsFile,
  parseShard,
  planShards,
  selectionItems,
  shardResults,
  SHIPPED_DURATIONS,
  type ShardPlan,
} from "../../src/orchestrate/shard.js";
import { DEFAULT_CHAIN_HOPS } from "../../src/scenarios/chain.js";
import { withParams } from "../../src/api/scenario.js";
import { SCENARIOS, selectScenarios } from "../../src/scenarios/index.js";
import { SELFTEST_SCENARIOS, selectSelftests } from "../../src/scenarios/selftests.js";
import { twoStageScenario } from "../../src/scenarios/two-stage.js";
import { uapiModel, UAPI_MODEL_DEFAULTS } from "../../src/scenarios/uapi-model.js";
import { CORRUPT_DEFAULT_SEED, corruptScenarios, corruptionTable } from "../../src/scenarios/corrupt.js";
import { CASE_IDS } from "../../src/corrupt/cases.js";
import type { RunReport } from "../../src/report/verdict.js";
import { PHASES } from "../../src/uapi/fuzz.js";
import { PLANTS } from "../../src/uapi/model.js";
import type { Scenario } from "../../src/api/scenario.js";
import { stderrLogger } from "../../src/util/log.js";
import { action, archOption, BASE_HELP, collect, intOption } from "../cli-support.js";
import { parseBase } from "../../src/kernel/build.js";
import { kernelVariant, VARIANT_HELP } from "../../src/kernel/variants.js";
import { timeoutFactor, TIMEOUT_FACTOR_ENV } from "../../src/util/deadline.js";

interface BootOptions {
  arch: ArchName[];
  jobs?: number;
  repeat?: number;
  kernel?: string;
  nextKernel?: string;
  out?: string;
  isolate?: boolean;
  base?: string;
  variant?: string;
  append?: string;
  shard?: string;
  durations?: string;
}

const JOBS_HELP = `guests running at once (default ${defaultGuestJobs()} here: one per core, 7 GiB of RAM each)`;

function bootOptions(cmd: Command): Command {
  return cmd
    .option("--arch <arch>", "x86_64, arm64 or all", archOption, [...ARCH_NAMES])
    .option("--kernel <file>", "boot this prebuilt image instead of building (one arch)")
    .option("--next-kernel <file>", "kexec into this image instead of the booted one")
    .option("--base <base>", BASE_HELP)
    .option("--variant <name>", VARIANT_HELP)
    .option(
      "--append <params>",
      "extra kernel parameters for every boot, after the harness's own (the kexec'd kernel inherits them)",
    )
    .option("--out <dir>", "artifacts folder (default out/runs/<time>)")
    .option("--jobs <n>", JOBS_HELP, intOption)
    .option("--repeat <n>", "run every scenario n times and count flakes (default 1)", intOption)
    .option(
      "--isolate",
      "a fresh guest for every scenario (by default scenarios that can share one guest and one kexec do)",
    )
    .option(
      "--shard <K/N>",
      "run only part K of N of the selection (a CI job matrix; join the run folders with 'kho report merge')",
    )
    .option(
      "--durations <file>",
      "with --shard: unit durations to balance the split (a run folder's unit-durations.json; default: the harness's ci/unit-durations.json)",
    );
}

/** The shard this run does, planned before anything is built, and printed. */
async function planShard(scenarios: readonly Scenario[], opts: BootOptions): Promise<ShardPlan | undefined> {
  if (opts.durations && !opts.shard)
    throw new HarnessError("--durations balances --shard K/N: give --shard too");
  if (!opts.shard) return undefined;
  const spec = parseShard(opts.shard);
  const from = resolve(opts.durations ?? SHIPPED_DURATIONS);
  const plan = planShards(
    selectionItems(opts.arch, scenarios, opts.repeat ?? 1),
    { isolate: opts.isolate === true, repeat: opts.repeat ?? 1 },
    spec,
    await loadDurationsFile(from),
    from,
  );
  for (const line of describeShard(plan)) stderrLogger(line);
  return plan;
}

/** Runs scenarios on every asked arch and reports them: KTAP on stdout, summary, JSON, JUnit. */
async function runAndReport(
  scenarios: readonly Scenario[],
  opts: BootOptions,
  epilogue?: (report: RunReport) => string,
): Promise<number> {
  if (opts.kernel && opts.arch.length !== 1) {
    throw new HarnessError("--kernel names one image: give its arch with --arch x86_64 or --arch arm64");
  }
  const variant = opts.variant === undefined ? undefined : kernelVariant(opts.variant);
  if (variant && opts.kernel)
    throw new HarnessError("--variant builds the harness's kernel: it excludes --kernel");
  // A slower kernel's deadlines, on top of the user's factor (in the environment, for children too).
  if (variant?.timeoutFactor) {
    process.env[TIMEOUT_FACTOR_ENV] = String(timeoutFactor() * variant.timeoutFactor);
    stderrLogger(
      `# the ${variant.name} kernel runs slower: deadlines x${variant.timeoutFactor} (x${timeoutFactor()} in all)`,
    );
  }
  const shard = await planShard(scenarios, opts);
  return reportRun(
    shard ? shardResults(shard) : scenarios.length * opts.arch.length * (opts.repeat ?? 1),
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
        ...(shard ? { shard } : {}),
        ...(opts.kernel ? { kernel: resolve(opts.kernel) } : {}),
        ...(opts.base ? { base: parseBase(opts.base) } : {}),
        ...(variant ? { variant: variant.name } : {}),
        ...(opts.append ? { append: opts.append } : {}),
        ...(opts.nextKernel ? { nextKernel: resolve(opts.nextKernel) } : {}),
      }),
    epilogue,
  );
}

interface RunCommandOptions {
  scenario?: string;
  chain?: number;
  target?: string;
  identity?: string;
  knownHosts?: string;
  consoleCmd?: string;
  powerCycleCmd?: string;
  nextInitrd?: string;
  kexecDeadline?: number;
}

/** `kho run --target`: the scenarios on a real machine, one at a time (each kexecs it). */
function runOnMachineAndReport(
  scenarios: readonly Scenario[],
  opts: BootOptions & RunCommandOptions,
  url: string,
): Promise<number> {
  const address = parseTargetUrl(url);
  const guestOnly = (
    [
      ["--kernel", opts.kernel],
      ["--variant", opts.variant],
      ["--append", opts.append],
      ["--shard", opts.shard],
      ["--repeat", opts.repeat],
      ["--jobs", opts.jobs],
      ["--isolate", opts.isolate],
    ] as const
  ).filter(([, v]) => v !== undefined && v !== false);
  if (guestOnly.length > 0)
    throw new HarnessError(
      `${guestOnly.map(([n]) => n).join(", ")} ${guestOnly.length === 1 ? "applies" : "apply"} to guests the harness starts: a machine target (--target) runs the kernel and command line it was booted with, one scenario at a time`,
      [],
      2,
    );
  return reportRun(scenarios.length, opts, (outDir, onResult) =>
    runOnTarget({
      address,
      scenarios,
      outDir,
      log: stderrLogger,
      onResult,
      ...(opts.identity ? { identity: resolve(opts.identity) } : {}),
      ...(opts.knownHosts ? { knownHosts: resolve(opts.knownHosts) } : {}),
      ...(opts.consoleCmd ? { consoleCmd: opts.consoleCmd } : {}),
      ...(opts.powerCycleCmd ? { powerCycleCmd: opts.powerCycleCmd } : {}),
      ...(opts.nextKernel ? { nextKernel: resolve(opts.nextKernel) } : {}),
      ...(opts.nextInitrd ? { nextInitrd: resolve(opts.nextInitrd) } : {}),
      ...(opts.kexecDeadline ? { kexecDeadlineMs: opts.kexecDeadline * 1000 } : {}),
      ...(opts.base ? { base: parseBase(opts.base) } : {}),
    }),
  );
}

export function registerRun(program: Command): void {
  bootOptions(
    program
      .command("run")
      .description(
        "run scenarios on QEMU guests (default: all scenarios, both arches, the harness's kernels)",
      )
      .option("--scenario <ids>", "comma-separated scenario ids or globs (see 'kho list')")
      .option("--chain <n>", `kexecs in a row for chain-memfd (default ${DEFAULT_CHAIN_HOPS})`, intOption)
      .option(
        "--target <url>",
        'run on a real machine, ssh://[USER@]HOST[:PORT], that carries the marker file (README, "Real machines"): it is kexeced',
      )
      .option("--identity <file>", "with --target: the private key to log in with (default ~/.ssh/id_*)")
      .option(
        "--known-hosts <file>",
        "with --target: where its host key is pinned (default ~/.ssh/known_hosts)",
      )
      .option("--console-cmd <cmd>", "with --target: a command whose output is the machine's console")
      .option(
        "--power-cycle-cmd <cmd>",
        "with --target: a command that power-cycles the machine, run when a kexec does not come back",
      )
      .option(
        "--next-initrd <file>",
        "with --target: the next kernel's initrd (default the machine's retained one)",
      )
      .option(
        "--kexec-deadline <s>",
        "with --target: seconds a kexec may take before the machine counts as not back (default 300)",
        intOption,
      ),
  ).action(
    action((opts: BootOptions & RunCommandOptions) => {
      const chosen = selectScenarios(opts.scenario).map((s) =>
        s.id === "chain-memfd" && opts.chain ? withParams(s, { hops: opts.chain }) : s,
      );
      return opts.target ? runOnMachineAndReport(chosen, opts, opts.target) : runAndReport(chosen, opts);
    }),
  );

  bootOptions(
    program
      .command("selftests")
      .description("run the kernel's liveupdate selftests across kexec (stage 1, kexec, stage 2)")
      .option("--test <names>", "comma-separated test names (default: all)"),
  ).action(
    action((opts: BootOptions & { test?: string }) => {
      const chosen = selectSelftests(opts.test);
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

  bootOptions(
    program
      .command("fuzz-uapi")
      .description(
        "model-based test of /dev/liveupdate: generated operation sequences, each answer checked against a model of the kernel's source; a mismatch is shrunk and printed with its replay flags",
      )
      .option("--runs <n>", `sequences in one kernel (default ${UAPI_MODEL_DEFAULTS.runs})`, intOption)
      .option(
        "--kexec-runs <n>",
        `sequences that kexec once, checked in the next kernel (default ${UAPI_MODEL_DEFAULTS.kexecRuns})`,
        intOption,
      )
      .option("--seed <n>", "fast-check's seed (default: a random one, printed first)", intOption)
      .option("--phase <p>", `${PHASES.join(", ")} or both`, "both")
      .option("--path <p>", "replay the counterexample at this fast-check path (printed with a failure)")
      .option("--replay-path <r>", "fast-check's commands replay path (printed with a failure)")
      .option(
        "--max-commands <n>",
        "commands per sequence at most (default: fast-check's medium size, about 40 ops)",
        intOption,
      )
      .option(
        "--plant <name>",
        `a deliberate model error, to see a mismatch found and shrunk: ${PLANTS.join(", ")}`,
      ),
  ).action(
    action(
      (
        opts: BootOptions & {
          runs?: number;
          kexecRuns?: number;
          seed?: number;
          phase: string;
          path?: string;
          replayPath?: string;
          maxCommands?: number;
          plant?: string;
        },
      ) => {
        if (!["both", ...PHASES].includes(opts.phase))
          throw new HarnessError(`--phase ${opts.phase}: give ${PHASES.join(", ")} or both`);
        if (opts.plant !== undefined && !(PLANTS as readonly string[]).includes(opts.plant))
          throw new HarnessError(`--plant ${opts.plant}: the plants are ${PLANTS.join(", ")}`);
        if (opts.path && opts.phase === "both")
          throw new HarnessError("--path replays one phase's counterexample: give its --phase too");
        const seed = opts.seed ?? Math.floor(Math.random() * 0x7fffffff);
        stderrLogger(`# fuzz-uapi seed ${seed}`);
        const scenario = withParams(uapiModel, {
          seed,
          phase: opts.phase,
          ...(opts.runs !== undefined ? { runs: opts.runs } : {}),
          ...(opts.kexecRuns !== undefined ? { kexecRuns: opts.kexecRuns } : {}),
          ...(opts.maxCommands !== undefined ? { maxCommands: opts.maxCommands } : {}),
          ...(opts.path ? { path: opts.path } : {}),
          ...(opts.replayPath ? { replayPath: opts.replayPath } : {}),
          ...(opts.plant ? { plant: opts.plant } : {}),
        });
        return runAndReport([scenario], opts);
      },
    ),
  );

  bootOptions(
    program
      .command("corrupt")
      .description(
        "damaged handovers: each case writes one field of a real handover at the kexec pause, and the next kernel must refuse it and go on",
      )
      .option("--case <ids>", `comma-separated case ids or globs (${CASE_IDS.join(", ")})`)
      .option("--seed <n>", `the cases' choices (default ${CORRUPT_DEFAULT_SEED})`, intOption),
  ).action(
    action((opts: BootOptions & { case?: string; seed?: number }) => {
      const all = corruptScenarios();
      const patterns = opts.case
        ?.split(",")
        .map((p) => `corrupt-${p.trim()}`)
        .join(",");
      const chosen = selectScenarios(patterns, all, "corruption case").map((s) =>
        opts.seed ? withParams(s, { seed: opts.seed }) : s,
      );
      return runAndReport(chosen, opts, (report) => corruptionTable(report.results));
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
        for (const s of [...SCENARIOS, ...SELFTEST_SCENARIOS, uapiModel, ...corruptScenarios()]) {
          process.stdout.write(`${s.id.padEnd(32)} needs ${s.needs.join(",").padEnd(30)} ${s.description}\n`);
        }
        return Promise.resolve(0);
      }),
    );
}
