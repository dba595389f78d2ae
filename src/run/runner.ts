// `kho run`: for each arch, get the kernel (cache or build) and check it, build the guest image,
// then boot a fresh guest per scenario, run it, and turn how it ended into a verdict.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { buildGuestImage } from "../image/initramfs.js";
import { keysOverlay, nextDiskFormat, writeBootInitrd, writeNextKernelDisk } from "../image/overlay.js";
import { buildKernel } from "../kernel/build.js";
import type { CachedKernel } from "../kernel/cache.js";
import { assertBootableKernel, type KernelReport } from "../kernel/inspect.js";
import { debianKernelSource } from "../kernel/source.js";
import { chooseAccel } from "../host/kvm.js";
import {
  activeExpectation,
  kernelFeatures,
  type Expectation,
  type KernelFeature,
} from "../scenarios/expectations.js";
import { CAPABILITIES, type Scenario } from "../scenarios/types.js";
import { formatDuration, type Logger } from "../util/log.js";
import { runPool } from "../util/pool.js";
import { GuestFault } from "../vm/fault.js";
import { generateKeys } from "../vm/keys.js";
import { SshFailure } from "../vm/ssh.js";
import { ScenarioContext, type KernelUnderTest } from "./context.js";
import { Guest } from "./guest.js";
import { CheckFailed, Skipped } from "./outcome.js";
import type { ScenarioResult } from "./verdict.js";

/** The largest guest a scenario boots (pages-folio-order18: 6 GiB) and QEMU's own share. */
const GIB_PER_GUEST = 7;

/**
 * Guests at once when the user does not say: one per host core (a TCG guest keeps a core busy
 * while it boots, and waits on SSH and kexec otherwise), as far as the host's memory holds them.
 */
export function defaultGuestJobs(): number {
  return Math.max(1, Math.min(cpus().length, Math.floor(totalmem() / 2 ** 30 / GIB_PER_GUEST)));
}

export interface RunOptions {
  readonly arches: readonly ArchName[];
  readonly scenarios: readonly Scenario[];
  /** A prebuilt image instead of the harness's build (one arch only). */
  readonly kernel?: string;
  /** Debian linux-source series of the harness's kernel (default: DEFAULT_SERIES). */
  readonly series?: string;
  /** What the guest kexecs into (default: the kernel it booted). */
  readonly nextKernel?: string;
  /** Artifacts root of this run. */
  readonly outDir: string;
  readonly log: Logger;
  /** Guests running at once (default 1). */
  readonly jobs?: number;
  /** Runs of every scenario, to hunt flakes (default 1). */
  readonly repeat?: number;
  /** Called with every result as soon as it is known (KTAP line). */
  readonly onResult: (r: ScenarioResult) => void;
}

export interface ArchSetup {
  readonly arch: ArchName;
  readonly kernel: KernelUnderTest;
  readonly accel: "kvm" | "tcg";
  /** Why that accelerator (the KVM probe's verdict). */
  readonly accelReason: string;
  readonly phaseMs: Record<string, number>;
}

export interface RunReport {
  readonly results: ScenarioResult[];
  readonly setups: ArchSetup[];
}

export async function runScenarios(opts: RunOptions): Promise<RunReport> {
  const results: ScenarioResult[] = [];
  const setups: ArchSetup[] = [];
  const keys = generateKeys();
  const scratchDirs: string[] = [];
  const repeat = opts.repeat ?? 1;
  // Every (arch, scenario, attempt), attempt-major so a flake hunt sweeps the whole suite each time.
  const work: { scenario: Scenario; prepared: PreparedArch; attempt: number; order: number }[] = [];
  const order = (arch: ArchName, scenario: Scenario, attempt: number) =>
    (attempt * opts.arches.length + opts.arches.indexOf(arch)) * opts.scenarios.length +
    opts.scenarios.indexOf(scenario);
  const ranked = new Map<ScenarioResult, number>();
  const record = (r: ScenarioResult, rank: number) => {
    results.push(r);
    ranked.set(r, rank);
    opts.onResult(r);
  };
  try {
    for (const arch of opts.arches) {
      const scratch = await mkdtemp(join(tmpdir(), `kho-run-${arch}-`));
      scratchDirs.push(scratch);
      try {
        const prepared = await prepareArch(arch, opts, scratch, keys);
        setups.push(prepared.summary);
        for (let attempt = 0; attempt < repeat; attempt++) {
          for (const scenario of opts.scenarios) {
            work.push({ scenario, prepared, attempt, order: order(arch, scenario, attempt) });
          }
        }
      } catch (err) {
        // The arch could not be set up (kernel, image): every scenario is an error with the reason.
        if (!(err instanceof HarnessError)) throw err;
        for (const scenario of opts.scenarios) {
          const r: ScenarioResult = {
            id: scenario.id,
            arch,
            verdict: "error",
            reason: err.message,
            evidence: err.evidence,
            phaseMs: {},
            totalMs: 0,
          };
          record(r, order(arch, scenario, 0));
        }
      }
    }
    work.sort((x, y) => x.order - y.order);
    await runPool(work, opts.jobs ?? 1, async (w) =>
      record(await runOne(w.scenario, w.prepared, opts, repeat > 1 ? w.attempt + 1 : undefined), w.order),
    );
  } finally {
    for (const dir of scratchDirs) await rm(dir, { recursive: true, force: true });
  }
  // Results arrive in completion order; the report lists them in suite order.
  results.sort((x, y) => (ranked.get(x) ?? 0) - (ranked.get(y) ?? 0));
  return { results, setups };
}

interface PreparedArch {
  readonly summary: ArchSetup;
  readonly report: KernelReport;
  readonly bootInitrd: string;
  readonly nextDisk: string;
  readonly keys: ReturnType<typeof generateKeys>;
  /** Capabilities of the kernel's source that decide expected failures. */
  readonly features: ReadonlySet<KernelFeature>;
}

async function prepareArch(
  arch: ArchName,
  opts: RunOptions,
  scratch: string,
  keys: ReturnType<typeof generateKeys>,
): Promise<PreparedArch> {
  const phaseMs: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      phaseMs[name] = Math.round(performance.now() - t);
    }
  };
  // The harness's kernel (built or cached) also gives the headers the guest agent needs.
  const built: CachedKernel | undefined = opts.kernel
    ? undefined
    : await timed("kernel", async () => {
        const source = await debianKernelSource(opts.series, opts.log);
        return (await buildKernel({ arch, source, userFragments: [], log: opts.log })).kernel;
      });
  const image = opts.kernel ?? built?.imagePath;
  if (!image) throw new HarnessError(`no kernel for ${arch}`);
  const report = await timed("inspect", () => assertBootableKernel(image, arch));
  const nextImage = opts.nextKernel ?? image;
  if (opts.nextKernel) await assertBootableKernel(opts.nextKernel, arch);
  const base = await timed("image", () => buildGuestImage(arch, built, opts.log));
  const bootInitrd = join(scratch, "initrd.cpio");
  const diskFormat = nextDiskFormat(report.config ?? new Map<string, string>());
  const nextDisk = join(scratch, `next.${diskFormat}`);
  await timed("boot-files", async () => {
    await writeBootInitrd(base.path, keysOverlay(keys), bootInitrd);
    await writeNextKernelDisk({ kernel: nextImage, initrd: bootInitrd }, nextDisk, diskFormat);
  });
  const { accel, why } = await chooseAccel(arch, opts.log);
  opts.log(
    `# ${arch}: kernel ${report.release ?? "?"} (${image}), ${accel.toUpperCase()} (${why}), image ${formatDuration(phaseMs.image ?? 0)}`,
  );
  return {
    summary: {
      arch,
      accel,
      accelReason: why,
      phaseMs,
      kernel: {
        image,
        release: report.release ?? "unknown",
        config: report.config ?? new Map<string, string>(),
        nextImage,
        built,
      },
    },
    report,
    bootInitrd,
    nextDisk,
    keys,
    features: built ? await kernelFeatures(built.manifest.sourceTree) : new Set(),
  };
}

function missingCapabilities(scenario: Scenario, kernel: KernelUnderTest): string[] {
  return scenario.needs
    .filter((c) => (kernel.config.get(CAPABILITIES[c]) ?? "n") === "n")
    .map((c) => `CONFIG_${CAPABILITIES[c]}`);
}

async function runOne(
  scenario: Scenario,
  prepared: PreparedArch,
  opts: RunOptions,
  attempt: number | undefined,
): Promise<ScenarioResult> {
  const { arch, kernel, accel } = prepared.summary;
  const started = performance.now();
  const base = { id: scenario.id, arch, ...(attempt ? { attempt } : {}) };
  const missing = missingCapabilities(scenario, kernel);
  if (missing.length > 0) {
    return {
      ...base,
      verdict: "skip",
      reason: `kernel lacks ${missing.join(", ")}`,
      phaseMs: {},
      totalMs: 0,
    };
  }
  const artifactsDir = join(opts.outDir, arch, scenario.id, attempt ? `run-${attempt}` : "");
  await mkdir(artifactsDir, { recursive: true });
  opts.log(`# ${scenario.id}.${arch}${attempt ? ` (run ${attempt})` : ""}: ${scenario.description}`);
  const expectation = activeExpectation(scenario.id, prepared.features);
  let guest: Guest | undefined;
  let ctx: ScenarioContext | undefined;
  const phaseMs: Record<string, number> = {};
  try {
    const bootStart = performance.now();
    guest = await Guest.start({
      arch,
      kernel: kernel.image,
      initrd: prepared.bootInitrd,
      nextDisk: prepared.nextDisk,
      boot: scenario.boot,
      accel,
      keys: prepared.keys,
      logDir: artifactsDir,
      name: `kho-${scenario.id}-${arch}${attempt ? `-${attempt}` : ""}`,
      log: opts.log,
    });
    phaseMs.boot = Math.round(performance.now() - bootStart);
    if (expectation) guest.vm.console.allow(expectation.consoleLines);
    ctx = new ScenarioContext(arch, guest, kernel, artifactsDir, opts.log, scenario.boot.memoryMiB ?? 1024);
    await scenario.run(ctx);
    // Ends the scenario under the watchdog: a fault printed after the last step fails it too.
    await ctx.artifact(`dmesg-boot${guest.boot}.txt`, await guest.run("dmesg"));
    return finish(
      base,
      ...expect(expectation, ["pass", undefined, []]),
      ctx,
      guest,
      phaseMs,
      started,
      artifactsDir,
    );
  } catch (err) {
    return finish(
      base,
      ...expect(expectation, classify(err, guest)),
      ctx,
      guest,
      phaseMs,
      started,
      artifactsDir,
    );
  } finally {
    await guest?.stop();
  }
}

type Outcome = [ScenarioResult["verdict"], string | undefined, readonly string[]];

/** Applies the expectation table: an expected failure is xfail, a surprise pass is xpass. */
function expect(expectation: Expectation | undefined, [verdict, reason, evidence]: Outcome): Outcome {
  if (!expectation) return [verdict, reason, evidence];
  if (verdict === "fail") return ["xfail", `${expectation.reason} (observed: ${reason ?? "?"})`, evidence];
  if (verdict === "pass") {
    return [
      "xpass",
      `EXPECTED FAILURE DID NOT HAPPEN: the kernel now gets this right; update src/scenarios/expectations.ts (${expectation.reason})`,
      evidence,
    ];
  }
  return [verdict, reason, evidence];
}

function classify(err: unknown, guest: Guest | undefined): Outcome {
  if (err instanceof Skipped) return ["skip", err.message, []];
  if (err instanceof CheckFailed) return ["fail", err.message, err.evidence];
  if (err instanceof GuestFault) return ["fail", err.message, err.excerpt];
  if (err instanceof SshFailure)
    return ["fail", err.message, [...err.evidence, ...(guest?.vm.console.lastLines(15) ?? [])]];
  if (err instanceof HarnessError) return ["error", err.message, err.evidence];
  const e = err instanceof Error ? err : new Error(String(err));
  return ["error", `harness bug: ${e.message}`, (e.stack ?? "").split("\n").slice(0, 8)];
}

function finish(
  base: { id: string; arch: ArchName; attempt?: number },
  verdict: ScenarioResult["verdict"],
  reason: string | undefined,
  evidence: readonly string[],
  ctx: ScenarioContext | undefined,
  guest: Guest | undefined,
  phaseMs: Record<string, number>,
  started: number,
  artifactsDir: string,
): ScenarioResult {
  const notes = ctx?.notes ?? [];
  return {
    ...base,
    verdict,
    ...(reason !== undefined
      ? { reason }
      : verdict === "pass" && notes.length
        ? { reason: notes.join("; ") }
        : {}),
    evidence,
    phaseMs: { ...phaseMs, ...(ctx?.phaseMs ?? {}) },
    totalMs: Math.round(performance.now() - started),
    ...(guest?.timings.length ? { boots: [...guest.timings] } : {}),
    artifactsDir,
  };
}
