// `kho run --target ssh://...`: the scenarios on a real machine reached over SSH only. The
// machine is checked as `kho target check` checks it (marker, KHO on, kexec allowed, the
// console command shows its console) and refused in one sentence when it is not ready. The
// harness builds the agent (and the next kernel, unless --next-kernel) for the machine's arch,
// uploads them to a private directory there before each scenario's first command and after each
// kexec that lost them, runs one scenario at a time (each kexecs the machine), and removes the
// directory at the end. What a machine target cannot do is skipped or recorded as not done.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Scenario } from "../api/scenario.js";
import { HarnessError } from "../errors.js";
import { buildAgent } from "../image/agent-build.js";
import type { KernelBase } from "../kernel/build.js";
import { kernelFeatures, type KernelFeature } from "../kernel/features.js";
import { assertBootableKernel } from "../kernel/inspect.js";
import { cacheRoot } from "../paths.js";
import type { RunReport, ScenarioResult } from "../report/verdict.js";
import { loadNextKernel, REBOOT_LOADED } from "../session/kexec.js";
import { MachineSession, type MachineFile } from "../session/machine.js";
import { checkTarget, type TargetReport } from "../target/check.js";
import { targetLogin, type TargetLoginOptions } from "../target/login.js";
import { scaled } from "../util/deadline.js";
import { formatDuration, type Logger } from "../util/log.js";
import { connectSsh } from "../vm/ssh.js";
import { harnessKernel } from "./runner.js";
import { runOnMachine, type MachineTarget } from "./scenario-run.js";

export interface TargetRunOptions extends TargetLoginOptions {
  readonly scenarios: readonly Scenario[];
  readonly consoleCmd?: string;
  readonly powerCycleCmd?: string;
  /** What the machine kexecs into (default: the harness's kernel for its arch). */
  readonly nextKernel?: string;
  /** Its initrd (default: the machine's /sys/firmware/initrd, kept by retain_initrd). */
  readonly nextInitrd?: string;
  readonly series?: string;
  readonly base?: KernelBase;
  /** How long a kexec may take before the machine counts as not back. */
  readonly kexecDeadlineMs?: number;
  readonly outDir: string;
  readonly log: Logger;
  readonly onResult: (r: ScenarioResult) => void;
}

/**
 * Kexecs the machine into the next kernel with nothing preserved, after a scenario that did not
 * pass; the console command is not attached (the old kernel may still print its damage). A
 * failure is logged: the next scenario's connection then says what the machine does.
 */
async function freshBoot(
  open: (logDir: string, withConsole?: boolean) => Promise<MachineSession>,
  after: ScenarioResult,
  log: Logger,
): Promise<void> {
  const started = performance.now();
  const logDir = join(after.artifactsDir ?? ".", "fresh-boot");
  try {
    const session = await open(logDir, false);
    try {
      await session.run(`kho-agent ${loadNextKernel(session.nextKernel)}`);
      await session.kexec(() => {
        // the channel dies with the old kernel: its end is not waited for
        void session.stream(REBOOT_LOADED).catch(() => undefined);
        return Promise.resolve();
      }, "fresh boot");
    } finally {
      await session.stop();
    }
    log(
      `# ${after.id}.${after.arch} did not pass: the machine kexeced into a fresh kernel (${formatDuration(performance.now() - started)})`,
    );
  } catch (err) {
    log(
      `# ${after.id}.${after.arch} did not pass, and the fresh boot after it failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** The initrd a kernel keeps when booted with retain_initrd (the harness's guests are). */
const RETAINED_INITRD = "/sys/firmware/initrd";

/** The machine as checked, or one sentence (exit 2) on why the harness will not run there. */
async function readyTarget(opts: TargetRunOptions): Promise<TargetReport & { arch: MachineTarget["arch"] }> {
  const report = await checkTarget({
    address: opts.address,
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...(opts.knownHosts ? { knownHosts: opts.knownHosts } : {}),
    ...(opts.consoleCmd ? { consoleCmd: opts.consoleCmd } : {}),
  });
  const [problem] = report.problems;
  if (problem) throw new HarnessError(problem.sentence, problem.evidence, 2);
  const arch = report.arch;
  if (!arch)
    throw new HarnessError(`${report.target} is ${report.machine}, not an arch the harness tests`, [], 2);
  return { ...report, arch };
}

export async function runOnTarget(opts: TargetRunOptions): Promise<RunReport> {
  const phaseMs: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      phaseMs[name] = Math.round(performance.now() - t);
    }
  };
  const machine = await timed("check", () => readyTarget(opts));
  const { arch, target } = machine;
  const built = await timed("kernel", () => harnessKernel(arch, opts, undefined));
  const agent = await timed("agent", () =>
    buildAgent(arch, {
      uapiInclude: join(built.dir, built.manifest.headersDir, "include"),
      outDir: join(cacheRoot(), "agent"),
    }),
  );
  const nextImage = opts.nextKernel ?? built.imagePath;
  const next = await timed("inspect", () => assertBootableKernel(nextImage, arch));
  // The harness's build is the machine's kernel only when the releases match: then the test
  // module builds for it and the source's features decide the expected failures.
  const ownBuild = built.manifest.kernelRelease === machine.release ? built : undefined;
  const features = ownBuild ? await kernelFeatures(ownBuild.manifest.sourceTree) : new Set<KernelFeature>();

  const workDir = `/var/tmp/kho-harness.${randomBytes(6).toString("hex")}`;
  // The key and the pins were accepted by the check: every later connection uses them as read.
  const ssh = await targetLogin(opts);
  const connect = () => connectSsh({ ...ssh, deadlineMs: scaled(30_000) });
  const setup = await connect();
  let memoryMiB: number;
  let initrd: string;
  try {
    const facts = await setup.exec(
      `grep '^MemTotal:' /proc/meminfo; test -r ${RETAINED_INITRD} && echo retained`,
      {
        deadlineMs: 30_000,
      },
    );
    memoryMiB = Math.round(Number(/MemTotal:\s+(\d+)/.exec(facts.stdout)?.[1] ?? 0) / 1024);
    if (!opts.nextInitrd && !facts.stdout.includes("retained"))
      throw new HarnessError(
        `${target} has no ${RETAINED_INITRD} (booted without retain_initrd): give the next kernel's initrd with --next-initrd`,
        [],
        2,
      );
    initrd = opts.nextInitrd ? `${workDir}/next-initrd` : RETAINED_INITRD;
  } finally {
    await setup.close().catch(() => undefined);
  }
  const files: MachineFile[] = [
    { local: agent, name: "kho-agent", mode: 0o755 },
    { local: nextImage, name: "next-kernel", mode: 0o644 },
    ...(opts.nextInitrd ? [{ local: opts.nextInitrd, name: "next-initrd", mode: 0o644 }] : []),
  ];
  const kernel = {
    image: `${target}: ${machine.release}`,
    release: machine.release,
    config: machine.config ?? new Map<string, string>(),
    nextImage,
    nextConfig: next.config ?? new Map<string, string>(),
    built: ownBuild,
    features,
  };
  const where: MachineTarget = {
    name: target,
    arch,
    kernel,
    features,
    memoryMiB,
    hasConsole: opts.consoleCmd !== undefined,
  };
  opts.log(
    `# ${target}: ${arch}, kernel ${machine.release}${ownBuild ? " (the harness's build)" : ""}, kexecs into ${nextImage}; files in ${workDir}; setup ${formatDuration(Object.values(phaseMs).reduce((a, b) => a + b, 0))}`,
  );
  const results: ScenarioResult[] = [];
  const open = (logDir: string, withConsole = true) =>
    MachineSession.open({
      target,
      ssh,
      workDir,
      files,
      nextKernel: { kernel: `${workDir}/next-kernel`, initrd },
      logDir,
      ...(opts.consoleCmd && withConsole ? { consoleCmd: opts.consoleCmd } : {}),
      ...(opts.powerCycleCmd ? { powerCycleCmd: opts.powerCycleCmd } : {}),
      ...(opts.kexecDeadlineMs ? { kexecDeadlineMs: opts.kexecDeadlineMs } : {}),
    });
  try {
    for (const scenario of opts.scenarios) {
      const r = await runOnMachine(scenario, where, open, opts);
      results.push(r);
      opts.onResult(r);
      // What went wrong may have left the kernel damaged (an expected failure's bad pages keep
      // printing): the next scenario starts in a kernel of its own, as on a guest of its own.
      if (!["pass", "skip", "notrun"].includes(r.verdict)) await freshBoot(open, r, opts.log);
    }
  } finally {
    // The last thing done there: the private directory goes (a machine that is gone keeps it).
    const link = await connect().catch(() => undefined);
    await link?.exec(`rm -rf ${workDir}`, { deadlineMs: 30_000 }).catch(() => undefined);
    await link?.close().catch(() => undefined);
  }
  return {
    results,
    setups: [{ arch, accel: "machine", accelReason: `${target} (kho run --target)`, phaseMs, kernel }],
    setupFailures: [],
  };
}
