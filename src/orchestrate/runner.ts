// `kho run`: for each arch, get the kernel (cache or build) and check it, build the guest image,
// then run the scenarios (scenario-run.ts): one guest each, or one shared by those that can.
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { buildGuestImage } from "../image/initramfs.js";
import {
  cachedNextKernelDisk,
  keysOverlay,
  nextDiskFormat,
  userspacePlacement,
  writeBootInitrd,
} from "../image/overlay.js";
import { buildKernel, type KernelBase } from "../kernel/build.js";
import type { CachedKernel } from "../kernel/cache.js";
import { assertBootableKernel } from "../kernel/inspect.js";
import { debianKernelSource, patchedSource } from "../kernel/source.js";
import { KERNEL_VARIANTS, variantFiles, type KernelVariantName } from "../kernel/variants.js";
import { chooseAccel } from "../host/kvm.js";
import { requireFreeSpace } from "../host/disk-space.js";
import { cacheRoot } from "../paths.js";
import { kernelFeatures, type KernelFeature } from "../kernel/features.js";
import type { Scenario } from "../api/scenario.js";
import { formatDuration, type Logger } from "../util/log.js";
import { runPool } from "../util/pool.js";
import { generateKeys } from "../vm/keys.js";
import {
  canShare,
  runOne,
  runShared,
  type ArchSetup,
  type NextVariant,
  type PreparedArch,
} from "./scenario-run.js";
import { shardRecord, shardTakes, shareGroup, type ShardPlan } from "./shard.js";
import { loadUnitDurations, longestFirst, saveUnitDurations, unitKey } from "./unit-durations.js";
import type { RunReport, ScenarioResult, SetupFailure } from "../report/verdict.js";

export type { ArchSetup } from "./scenario-run.js";

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
  /** What the harness's kernel is configured from (default: lean, Kconfig's defaults). */
  readonly base?: KernelBase;
  /** Boot a variant of the harness's kernel (both boots), e.g. the debug one. */
  readonly variant?: KernelVariantName;
  /** Kernel parameters every guest boots with, after the arch's and the variant's. */
  readonly append?: string;
  /** What the guest kexecs into (default: the kernel it booted). */
  readonly nextKernel?: string;
  /** Artifacts root of this run. */
  readonly outDir: string;
  readonly log: Logger;
  /** Guests running at once (default 1). */
  readonly jobs?: number;
  /** Runs of every scenario, to hunt flakes (default 1). */
  readonly repeat?: number;
  /** One guest per scenario, even for those that could share one (see session/shared.ts). */
  readonly isolate?: boolean;
  /** Called with every result as soon as it is known (KTAP line). */
  readonly onResult: (r: ScenarioResult) => void;
  /** Called once per failed arch setup, before the results it leaves not run. */
  readonly onSetupFailure?: (f: SetupFailure) => void;
  /** The guests' SSH keys (default: a fresh pair per run); a test that logs in as a user gives its own. */
  readonly keys?: ReturnType<typeof generateKeys>;
  /** Run only this shard's part of the selection (`--shard K/N`, planned by shard.ts). */
  readonly shard?: ShardPlan;
}

export type { RunReport } from "../report/verdict.js";

export async function runScenarios(opts: RunOptions): Promise<RunReport> {
  const results: ScenarioResult[] = [];
  const setups: ArchSetup[] = [];
  const setupFailures: SetupFailure[] = [];
  const keys = opts.keys ?? generateKeys();
  const scratchDirs: string[] = [];
  const repeat = opts.repeat ?? 1;
  await requireFreeSpace(
    [
      { path: cacheRoot(), mib: 512, what: "the cache (guest images, next-kernel disks, the test module)" },
      { path: opts.outDir, mib: 256, what: "the run's folder (artifacts, console logs)" },
      { path: tmpdir(), mib: 128, what: "the scratch folder (boot initrds)" },
    ],
    "a run",
  );
  // Every (arch, scenario, attempt), attempt-major so a flake hunt sweeps the whole suite each time.
  const work: Work[] = [];
  const order = (arch: ArchName, scenario: Scenario, attempt: number) =>
    (attempt * opts.arches.length + opts.arches.indexOf(arch)) * opts.scenarios.length +
    opts.scenarios.indexOf(scenario);
  const ranked = new Map<ScenarioResult, number>();
  const measured = new Map<string, number>();
  const record = (r: ScenarioResult, rank: number) => {
    results.push(r);
    ranked.set(r, rank);
    opts.onResult(r);
  };
  // With --shard, only this shard's (arch, scenario, attempt); an arch it has none of is not set up.
  const mine = (arch: ArchName, scenario: Scenario, attempt: number) =>
    !opts.shard || shardTakes(opts.shard, arch, scenario.id, attempt);
  const attempts = Array.from({ length: repeat }, (_, i) => i);
  try {
    for (const arch of opts.arches) {
      const taken = attempts.flatMap((attempt) =>
        opts.scenarios.filter((s) => mine(arch, s, attempt)).map((scenario) => ({ scenario, attempt })),
      );
      if (taken.length === 0) continue;
      const scratch = await mkdtemp(join(tmpdir(), `kho-run-${arch}-`));
      scratchDirs.push(scratch);
      try {
        const prepared = await prepareArch(arch, opts, scratch, keys);
        setups.push(prepared.summary);
        for (const { scenario, attempt } of taken)
          work.push({
            key: unitKey(arch, [scenario.id]),
            scenario,
            prepared,
            attempt,
            order: order(arch, scenario, attempt),
          });
      } catch (err) {
        // The arch could not be set up (kernel, image): one failure with its evidence, and
        // every scenario of the arch not run because of it.
        if (!(err instanceof HarnessError)) throw err;
        const failure = setupFailure(arch, err, taken.length);
        setupFailures.push(failure);
        opts.onSetupFailure?.(failure);
        for (const { scenario, attempt } of taken)
          record(
            notRunResult(scenario.id, failure, repeat > 1 ? attempt + 1 : undefined),
            order(arch, scenario, attempt),
          );
      }
    }
    const units = scheduleUnits(work, opts.isolate === true, await loadUnitDurations());
    // Once a write failed for want of space, no more guests start: their artifacts would not fit.
    let diskFull: string | undefined;
    await runPool(units, opts.jobs ?? 1, async (u) => {
      const attempt = repeat > 1 ? u.attempt + 1 : undefined;
      const started = performance.now();
      const members = u.kind === "one" ? [u.scenario] : u.members;
      const rs = diskFull
        ? members.map((s): ScenarioResult => ({
            id: s.id,
            arch: u.prepared.summary.arch,
            ...(attempt ? { attempt } : {}),
            verdict: "notrun",
            reason: `not run: the disk filled up earlier in this run (${diskFull ?? ""})`,
            phaseMs: {},
            totalMs: 0,
          }))
        : u.kind === "one"
          ? [await runOne(u.scenario, u.prepared, opts, attempt)]
          : await runShared(u.members, u.label, u.prepared, opts, attempt);
      diskFull ??= rs.find((r) => r.diskFull)?.reason;
      rs.forEach((r, i) => record(r, u.kind === "one" ? u.order : (u.orders[i] ?? u.order)));
      // A unit that failed may have waited out a deadline: no measure of its next run.
      if (rs.every((r) => r.verdict !== "fail" && r.verdict !== "error"))
        measured.set(u.key, Math.round(performance.now() - started));
    });
  } finally {
    await saveUnitDurations(measured, opts.outDir).catch(() => undefined);
    for (const dir of scratchDirs) await rm(dir, { recursive: true, force: true });
  }
  // Results arrive in completion order; the report lists them in suite order.
  results.sort((x, y) => (ranked.get(x) ?? 0) - (ranked.get(y) ?? 0));
  return { results, setups, setupFailures, ...(opts.shard ? { shard: shardRecord(opts.shard) } : {}) };
}

/** Which setup an error came from: prepareArch tags its errors with the phase they broke. */
export function setupFailure(arch: ArchName, err: HarnessError, notRun: number): SetupFailure {
  const stage = err instanceof SetupStageError ? err.stage : "setup";
  return { arch, stage, message: err.message, evidence: err.evidence, notRun };
}

export function notRunResult(id: string, f: SetupFailure, attempt?: number): ScenarioResult {
  return {
    id,
    arch: f.arch,
    ...(attempt ? { attempt } : {}),
    verdict: "notrun",
    reason: `not run: the ${f.arch} setup (${f.stage}) failed`,
    phaseMs: {},
    totalMs: 0,
    notRunBecause: { setupArch: f.arch, stage: f.stage },
  };
}

/** A HarnessError from one of an arch's setup phases, with the phase's name. */
export class SetupStageError extends HarnessError {
  constructor(
    readonly stage: string,
    cause: HarnessError,
  ) {
    super(cause.message, cause.evidence, cause.exitCode);
  }
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
    } catch (e) {
      throw e instanceof HarnessError && !(e instanceof SetupStageError) ? new SetupStageError(name, e) : e;
    } finally {
      phaseMs[name] = Math.round(performance.now() - t);
    }
  };
  // The harness's kernel (built or cached) also gives the headers the guest agent needs.
  const built: CachedKernel | undefined = opts.kernel
    ? undefined
    : await timed("kernel", () => harnessKernel(arch, opts, opts.variant));
  const image = opts.kernel ?? built?.imagePath;
  if (!image) throw new HarnessError(`no kernel for ${arch}`);
  const report = await timed("inspect", () => assertBootableKernel(image, arch));
  const nextImage = opts.nextKernel ?? image;
  const nextReport = opts.nextKernel ? await assertBootableKernel(opts.nextKernel, arch) : report;
  const diskFormat = nextDiskFormat(report.config ?? new Map<string, string>());
  const placement = userspacePlacement(diskFormat, [report.config, nextReport.config]);
  const base = await timed("image", () => buildGuestImage(arch, built, opts.log, placement));
  const bootInitrd = join(scratch, "initrd.cpio");
  const nextDisk = await timed("boot-files", async () => {
    await writeBootInitrd(base.path, keysOverlay(keys), bootInitrd);
    return cachedNextKernelDisk(nextImage, diskFormat, base.userspace);
  });
  // Built on first use, when the first scenario that kexecs into it gets its turn (those run
  // last): the other scenarios' verdicts do not wait for another kernel build.
  const variants = new Map<string, Promise<NextVariant | HarnessError>>();
  const variant = (name: KernelVariantName) => {
    let ready = variants.get(name);
    if (!ready) {
      ready = prepareVariant(arch, name, opts, built, (image) =>
        cachedNextKernelDisk(image, diskFormat, base.userspace),
      ).catch((e: unknown) => {
        // Only the scenarios that kexec into it are stopped, with this as their evidence.
        if (e instanceof HarnessError) return e;
        throw e;
      });
      variants.set(name, ready);
    }
    return ready;
  };
  const { accel, why } = await chooseAccel(arch, opts.log);
  const features = built ? await kernelFeatures(built.manifest.sourceTree) : new Set<KernelFeature>();
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
        features,
      },
    },
    report,
    bootInitrd,
    nextDisk,
    variant,
    ...bootAppendOf(opts),
    keys,
    features,
  };
}

/** The parameters every guest of the run adds: the variant's (which depend on the guest's
 *  memory), then the user's --append. */
export function bootAppendOf(opts: Pick<RunOptions, "variant" | "append">): {
  bootAppend?: (memoryMiB: number) => string;
} {
  const fromVariant = opts.variant ? KERNEL_VARIANTS[opts.variant].append : undefined;
  const extra = opts.append?.trim();
  if (!fromVariant && !extra) return {};
  return {
    bootAppend: (memoryMiB) => [fromVariant?.(memoryMiB) ?? "", extra ?? ""].join(" ").trim(),
  };
}

/**
 * The order guests start in: longest first (longestFirst), except the scenarios that kexec into a
 * kernel variant, which go last: their first run builds it, and no other verdict should wait.
 */
export function scheduleUnits(
  work: readonly Work[],
  isolate: boolean,
  durations: Parameters<typeof longestFirst>[1],
): Unit[] {
  const needsVariant = (u: Unit) => u.kind === "one" && u.scenario.nextKernel !== undefined;
  return longestFirst(planUnits(work, isolate), durations).sort(
    (a, b) => Number(needsVariant(a)) - Number(needsVariant(b)),
  );
}

/** The harness's kernel (built or cached) from Debian's source, or a variant of it. */
export async function harnessKernel(
  arch: ArchName,
  opts: Pick<RunOptions, "series" | "base" | "log">,
  variant: KernelVariantName | undefined,
): Promise<CachedKernel> {
  const files = variant ? variantFiles(KERNEL_VARIANTS[variant]) : undefined;
  const source = await patchedSource(
    await debianKernelSource(opts.series, opts.log),
    files?.patches ?? [],
    opts.log,
  );
  const built = await buildKernel({
    arch,
    source,
    userFragments: files?.fragments ?? [],
    base: opts.base,
    log: opts.log,
  });
  return built.kernel;
}

/** Builds (or finds) a kernel variant from the same source and base as the harness's kernel. */
async function prepareVariant(
  arch: ArchName,
  name: KernelVariantName,
  opts: RunOptions,
  built: CachedKernel | undefined,
  disk: (image: string) => Promise<string>,
): Promise<NextVariant> {
  if (!built)
    throw new HarnessError(
      `the ${name} variant is built from the harness's own kernel recipe, and this run boots a prebuilt --kernel`,
    );
  const kernel = await harnessKernel(arch, opts, name);
  const report = await assertBootableKernel(kernel.imagePath, arch);
  return {
    image: kernel.imagePath,
    release: report.release ?? kernel.manifest.kernelRelease,
    config: report.config ?? new Map<string, string>(),
    disk: await disk(kernel.imagePath),
    built: kernel,
  };
}

interface Work {
  readonly key: string;
  readonly scenario: Scenario;
  readonly prepared: PreparedArch;
  readonly attempt: number;
  readonly order: number;
}

type Unit =
  | ({ readonly kind: "one" } & Work)
  | {
      readonly kind: "shared";
      readonly key: string;
      readonly members: readonly Scenario[];
      readonly orders: readonly number[];
      readonly label: string;
      readonly prepared: PreparedArch;
      readonly attempt: number;
      readonly order: number;
    };

/**
 * Groups the shareable scenarios of one arch, attempt and KHO setting (see shareGroup) onto one
 * guest each (unless `isolate`); the rest run one guest each. Shared guests go first: they are
 * the longest units until `longestFirst` knows better from the last run's times.
 */
export function planUnits(work: readonly Work[], isolate: boolean): Unit[] {
  const groups = new Map<string, Work[]>();
  const units: Unit[] = [];
  for (const w of [...work].sort((x, y) => x.order - y.order)) {
    if (isolate || !canShare(w.scenario, w.prepared)) {
      units.push({ kind: "one", ...w });
      continue;
    }
    const key = shareGroup(w.prepared.summary.arch, w.attempt, w.scenario.boot);
    groups.set(key, [...(groups.get(key) ?? []), w]);
  }
  const shared: Unit[] = [];
  const perArch = new Map<string, number>();
  for (const members of groups.values()) {
    const [head] = members;
    if (!head) continue;
    if (members.length === 1) {
      units.push({ kind: "one", ...head });
      continue;
    }
    const n = (perArch.get(head.prepared.summary.arch) ?? 0) + 1;
    perArch.set(head.prepared.summary.arch, n);
    shared.push({
      kind: "shared",
      key: unitKey(
        head.prepared.summary.arch,
        members.map((m) => m.scenario.id),
      ),
      members: members.map((m) => m.scenario),
      orders: members.map((m) => m.order),
      label: `shared-guest-${n}`,
      prepared: head.prepared,
      attempt: head.attempt,
      order: head.order,
    });
  }
  return [...shared, ...units.sort((x, y) => x.order - y.order)];
}
