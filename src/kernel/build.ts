// `kho kernel build`: configure, build and install a KHO-enabled kernel for one arch, cached
// by everything that determines the result. The O= build directory is kept per source tree
// and arch, so a patched tree rebuilds incrementally while each result gets its own entry.
import { createWriteStream } from "node:fs";
import { appendFile, copyFile, mkdir, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { execa } from "execa";
import { archSpec, type ArchName, type ArchSpec } from "../arch.js";
import { HarnessError } from "../errors.js";
import { requireTools } from "../host/tools.js";
import { requireFreeSpace } from "../host/disk-space.js";
import { findInPath } from "../util/find-in-path.js";
import { cachePaths } from "../paths.js";
import { writeFileAtomic } from "../util/build-slot.js";
import { trackProcess } from "../vm/reaper.js";
import { endProcessGroup } from "../util/process-group.js";
import { withEntryLock, type HeldLock } from "../util/entry-lock.js";
import { cacheKey, rememberedForFile, sha256, sha256File } from "../util/hash.js";
import { formatDuration, heartbeat, type Logger } from "../util/log.js";
import { scaled } from "../util/deadline.js";
import {
  commitManifest,
  entryDir,
  lookupKernel,
  MANIFEST_SCHEMA,
  type CachedKernel,
  type KernelManifest,
} from "./cache.js";
import {
  describeFragments,
  explainMissing,
  findMissing,
  loadFragments,
  parseConfig,
  requiredOptions,
} from "./config.js";
import type { KernelSource } from "./source.js";

/** Bump when the build recipe changes in a way the key's other parts do not capture. */
const RECIPE_VERSION = "2";

/**
 * What the fragments are merged over. `lean` (the default): Kconfig's defaults, the fragments
 * written into an empty .config and `olddefconfig`, as the kernel's own vmtest.sh scripts do.
 * `defconfig`: the arch's defconfig (the recipe before lean). Both get trim.config. `file`: a
 * config of the user's own (a distribution's, /boot/config-*, a production one), taken as it is.
 */
export type KernelBase =
  | { readonly kind: "lean" }
  | { readonly kind: "defconfig" }
  | { readonly kind: "file"; readonly path: string };

export const LEAN_BASE: KernelBase = { kind: "lean" };

/** `--base lean|defconfig|FILE`. */
export function parseBase(value: string): KernelBase {
  if (value === "lean" || value === "defconfig") return { kind: value };
  return { kind: "file", path: value };
}

/** The base as `--base` spells it. */
function baseWord(base: KernelBase): string {
  return base.kind === "file" ? base.path : base.kind;
}

/** A base file's text, refused in one sentence when it cannot be read or holds no config. */
async function readBaseConfig(path: string): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => {
    throw new HarnessError(`the base config ${path} cannot be read`);
  });
  if (!/^(# )?CONFIG_[A-Za-z0-9_]+(=| is not set)/m.test(text))
    throw new HarnessError(`${path} is not a kernel config (no CONFIG_ lines)`);
  return text;
}

export interface BuildRequest {
  readonly arch: ArchName;
  readonly source: KernelSource;
  readonly userFragments: readonly string[];
  /** Default: lean. */
  readonly base?: KernelBase;
  readonly jobs?: number;
  readonly log: Logger;
  /** Only look in the cache: a miss is a KernelNotCached error instead of a build. */
  readonly cachedOnly?: boolean;
}

export class KernelNotCached extends HarnessError {}

export interface BuildResult {
  readonly kernel: CachedKernel;
  readonly cached: boolean;
  readonly ms: number;
}

export function defaultJobs(): number {
  return cpus().length + 1;
}

/** Part of the cache key; `gcc --version` is a process start (20-100 ms), so it is remembered. */
async function compilerVersion(spec: ArchSpec): Promise<string> {
  const name = `${spec.crossCompile}gcc`;
  // Asked by the name the build uses: gcc prints the name it was called by.
  const ask = async () => {
    const r = await execa(name, ["--version"], { reject: false });
    return r.stdout.split("\n")[0] ?? "unknown";
  };
  const found = findInPath(name);
  // Stamped on the real binary: /usr/bin/gcc is a symlink an upgrade may leave in place.
  return found ? rememberedForFile(await realpath(found), `version of ${name}`, ask) : ask();
}

export async function buildKernel(req: BuildRequest): Promise<BuildResult> {
  const started = performance.now();
  const spec = archSpec(req.arch);
  const { log } = req;
  const base = req.base ?? LEAN_BASE;
  const [fragments, compiler, baseText] = await Promise.all([
    loadFragments(spec, req.userFragments, base.kind !== "file"),
    compilerVersion(spec),
    base.kind === "file" ? readBaseConfig(base.path) : undefined,
  ]);
  const fragmentHashes = fragments.map((f) => ({ name: basename(f.path), sha256: sha256(f.text) }));
  const baseId = base.kind === "file" ? `file ${sha256(baseText ?? "")}` : base.kind;
  const recipe = {
    recipe: RECIPE_VERSION,
    arch: spec.name,
    base: baseId,
    fragments: JSON.stringify(fragmentHashes),
    compiler,
  };
  const key = cacheKey({ ...recipe, source: req.source.identity });
  const cachedResult = (kernel: CachedKernel): BuildResult => ({
    kernel,
    cached: true,
    ms: performance.now() - started,
  });
  const found = await lookupKernel(key);
  if (found.state === "hit") return cachedResult(found.kernel);
  if (req.cachedOnly) {
    throw new KernelNotCached(
      `no cached ${spec.name} kernel for ${req.source.identity} (${found.state === "corrupt" ? `entry ${key} is corrupt` : `key ${key}`}): build it with kho kernel build --arch ${spec.name}${req.source.kind === "debian" ? ` --series ${req.source.series}` : ` --src ${req.source.tree}`}${base.kind === "lean" ? "" : ` --base ${baseWord(base)}`}`,
    );
  }
  // The O= directory is per tree, arch and recipe (base, fragments, compiler): a new version of
  // the tree rebuilds incrementally, and another recipe of it (a variant, a user's fragment)
  // never reconfigures the directory a cached kernel's test module is built against
  // (kmod-build.ts checks that it still holds that kernel's build). One lock per directory.
  const buildDir = join(
    cachePaths.builds(),
    `${spec.name}-${sha256(req.source.tree).slice(0, 12)}-${cacheKey(recipe).slice(0, 8)}`,
  );
  return withEntryLock(`${buildDir}.lock`, `building the ${spec.name} kernel`, { log }, async (lock) => {
    // Another process may have built it while this one waited for the lock.
    const now = await lookupKernel(key);
    if (now.state === "hit") return cachedResult(now.kernel);
    if (now.state === "corrupt") log(`# cache entry ${key} is incomplete (${now.reason}): rebuilding it`);
    return build(lock);
  });

  async function build(lock: HeldLock): Promise<BuildResult> {
    // Only a build needs these (probing them costs ~0.2 s, which a cache hit should not pay).
    await requireTools(
      [
        "make",
        "flex",
        "bison",
        "bc",
        "perl",
        "libelf headers",
        "libssl headers",
        "rsync",
        `${spec.crossCompile}gcc`,
      ],
      `building the ${spec.name} kernel`,
    );

    // a lean build directory is about 400 MiB, a defconfig one 2-3 GiB; the entry 20-60 MiB
    await requireFreeSpace(
      [{ path: cachePaths.builds(), mib: 3072, what: "the kernel build directory (O=) and its cache entry" }],
      `building the ${spec.name} kernel`,
    );
    const out = entryDir(key);
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    await mkdir(buildDir, { recursive: true });
    const logPath = join(out, "build.log");
    const jobs = req.jobs ?? defaultJobs();
    const make = makeRunner(req.source.tree, buildDir, spec, logPath, log, (pid) => lock.adopt(pid));
    const phaseMs: Record<string, number> = {};
    const phase = async (name: string, fn: () => Promise<void>) => {
      const t = performance.now();
      log(`# ${spec.name}: ${name}`);
      await fn();
      phaseMs[name] = Math.round(performance.now() - t);
    };

    log(
      `# ${spec.name}: building ${req.source.identity}, base ${baseWord(base)} + ${describeFragments(fragments)}, -j${jobs}, log ${logPath}`,
    );
    await phase("configure", async () => {
      const dotConfig = join(buildDir, ".config");
      if (base.kind === "defconfig") await make.run(["defconfig"], "defconfig");
      else await writeFile(dotConfig, base.kind === "file" ? `# --- ${base.path}\n${baseText ?? ""}` : "");
      await appendFile(
        dotConfig,
        "\n" + fragments.map((f) => `# --- ${basename(f.path)}\n${f.text}`).join("\n"),
      );
      await make.run(["olddefconfig"], "olddefconfig");
      const actual = parseConfig(await readFile(dotConfig, "utf8"));
      const missing = findMissing(requiredOptions(fragments), actual);
      if (missing.length > 0) {
        const lines = await Promise.all(
          missing.map(
            async (m) =>
              `CONFIG_${m.name}: wanted ${m.wanted}, got ${m.actual}: ${await explainMissing(req.source.tree, m.name, actual)}`,
          ),
        );
        throw new HarnessError(
          `the ${spec.name} kernel config lacks ${missing.map((m) => `CONFIG_${m.name}`).join(", ")} after olddefconfig`,
          lines,
        );
      }
    });
    const statsKey = cacheKey(recipe);
    const previous = await previousBuild(buildDir, statsKey);
    await phase("build", () => make.run([`-j${jobs}`, spec.imageTarget, "modules"], "build", previous));
    const modulesDir = "modules";
    const headersDir = "headers";
    await phase("install", async () => {
      await make.run(
        [`-j${jobs}`, "modules_install", `INSTALL_MOD_PATH=${join(out, modulesDir)}`, "INSTALL_MOD_STRIP=1"],
        "modules_install",
      );
      await make.run(["headers_install", `INSTALL_HDR_PATH=${join(out, headersDir)}`], "headers_install");
    });

    const image = basename(spec.imagePath);
    await copyFile(join(buildDir, spec.imagePath), join(out, image));
    await copyFile(join(buildDir, ".config"), join(out, "config"));
    // for naming where a hung guest's vCPUs are (src/kernel/symbols.ts)
    await copyFile(join(buildDir, "System.map"), join(out, "System.map"));
    const release = (await readFile(join(buildDir, "include/config/kernel.release"), "utf8")).trim();
    const manifest: KernelManifest = {
      schema: MANIFEST_SCHEMA,
      key,
      arch: spec.name,
      sourceIdentity: req.source.identity,
      sourceTree: req.source.tree,
      buildDir,
      kernelRelease: release,
      compiler,
      fragments: fragmentHashes,
      configSha256: await sha256File(join(out, "config")),
      image,
      imageSha256: await sha256File(join(out, image)),
      imageSize: (await stat(join(out, image))).size,
      modulesDir,
      headersDir,
      builtAt: new Date().toISOString(),
      base: baseId,
      phaseMs,
      wallMs: Math.round(performance.now() - started),
      cpuSeconds: Math.round(make.cpuSeconds() * 10) / 10,
      objectCount: make.objects(),
    };
    await commitManifest(out, manifest);
    await recordBuild(buildDir, statsKey, {
      objects: Math.max(make.objects(), previous.objects ?? 0),
      buildMs: phaseMs.build ?? 0,
      fromScratch: previous.objects === undefined,
    });
    const ms = performance.now() - started;
    log(
      `# ${spec.name}: built ${release} in ${formatDuration(ms)} (${manifest.cpuSeconds} CPU s, ${manifest.objectCount} objects)`,
    );
    return {
      kernel: { dir: out, manifest, imagePath: join(out, image), configPath: join(out, "config") },
      cached: false,
      ms,
    };
  }
}

const OBJECT_LINE = /^\s+(CC \[M\]|CC|AS|LD|AR|HOSTCC)\s+(\S+)/;

/** What earlier builds tell about this one: the object count this build directory reached
 *  last time (a percentage for an incremental build), and the last from-scratch build of the
 *  same recipe (an estimate of the time left). */
export interface PreviousBuild {
  readonly objects?: number;
  readonly scratch?: { readonly objects: number; readonly buildMs: number };
}

/** The heartbeat's progress text: objects so far, a percentage when a total is known, and the
 *  time left when a from-scratch build of the same recipe was timed. */
export function progressText(objects: number, elapsedMs: number, previous: PreviousBuild): string {
  const fresh = previous.objects === undefined;
  const total = fresh ? previous.scratch?.objects : previous.objects;
  if (!total) return `${objects} objects`;
  const frac = Math.min(0.99, objects / total);
  const pct = ` (~${Math.round(frac * 100)}%)`;
  if (!fresh || !previous.scratch) return `${objects} objects${pct}`;
  // Early on the object rate says little (configure, host tools): use the last build's time.
  const leftMs =
    frac < 0.05
      ? previous.scratch.buildMs - elapsedMs
      : (elapsedMs / Math.max(objects, 1)) * (total - objects);
  return `${objects} objects${pct}, about ${formatDuration(Math.max(leftMs, 0))} left`;
}

/** Parses the second line of bash's `times` (children's user and system time): CPU seconds. */
export function parseTimes(text: string): number {
  const line = text.trim().split("\n")[1] ?? "";
  const parts = [...line.matchAll(/(\d+)m([\d.]+)s/g)];
  if (parts.length !== 2)
    throw new HarnessError(`unexpected output of bash's times: ${JSON.stringify(text)}`);
  return parts.reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0);
}

/**
 * A make that prints nothing for this long (before the timeout factor) is stuck: a vmlinux link,
 * the slowest silent step, takes about a minute here.
 */
export const BUILD_STALL_MS = 10 * 60_000;

/** Runs make with the full output in the log file, a heartbeat line on the terminal, and the
 *  log's last lines as evidence when it fails. Each make runs under bash, whose `times` gives
 *  the CPU seconds of make and all its children. A make silent for `stallMs` is killed (its
 *  whole process group) and fails the build. */
export function makeRunner(
  tree: string,
  buildDir: string,
  spec: ArchSpec,
  logPath: string,
  log: Logger,
  onGroup: (pid: number) => Promise<void>,
  stallMs = scaled(BUILD_STALL_MS),
) {
  let objects = 0;
  let cpu = 0;
  let last = "";
  const timesFile = `${logPath}.times`;
  return {
    objects: () => objects,
    cpuSeconds: () => cpu,
    async run(targets: string[], label: string, previous: PreviousBuild = {}): Promise<void> {
      const args = ["-C", tree, `O=${buildDir}`, `ARCH=${spec.kernelArch}`, ...targets];
      if (spec.crossCompile) args.push(`CROSS_COMPILE=${spec.crossCompile}`);
      const logFile = createWriteStream(logPath, { flags: "a" });
      logFile.write(`\n$ make ${args.join(" ")}\n`);
      const begun = performance.now();
      const stop = heartbeat(log, `${spec.name}: ${label}`, () => {
        const text = progressText(objects, performance.now() - begun, previous);
        return `${text}${last ? `, last ${last}` : ""}`;
      });
      try {
        const child = execa(
          "bash",
          ["-c", 'make "$@"; rc=$?; times > "$KHO_TIMES_FILE"; exit $rc', "bash", ...args],
          // Its own process group, recorded in the lock: if this process is killed, the one that
          // takes the lock over ends the make it left behind before building in the same O=.
          {
            all: true,
            buffer: false,
            reject: false,
            detached: true,
            env: { LC_ALL: "C", KHO_TIMES_FILE: timesFile },
          },
        );
        // The group (negative pid) goes when this process exits, as QEMU does (vm/reaper.ts).
        const untrack = child.pid !== undefined ? trackProcess(-child.pid, "make", "SIGTERM") : () => false;
        if (child.pid !== undefined) await onGroup(child.pid);
        let lastLine = performance.now();
        let stalled = false;
        const stallCheck = setInterval(
          () => {
            if (performance.now() - lastLine < stallMs || child.pid === undefined) return;
            stalled = true;
            void endProcessGroup(child.pid);
          },
          Math.min(10_000, stallMs / 4),
        );
        const lines = createInterface({ input: child.all });
        lines.on("line", (line) => {
          lastLine = performance.now();
          logFile.write(line + "\n");
          const m = OBJECT_LINE.exec(line);
          if (m) {
            objects++;
            last = m[2] ?? "";
          }
        });
        const result = await child.finally(() => {
          clearInterval(stallCheck);
          untrack();
        });
        await new Promise((resolve) => logFile.end(resolve));
        if (stalled) {
          const text = await readFile(logPath, "utf8");
          throw new HarnessError(
            `make ${label} for ${spec.name} printed nothing for ${formatDuration(stallMs)} and was stopped (a stuck build; scale the limit with --timeout-factor); full log: ${logPath}`,
            text.trimEnd().split("\n").slice(-15),
          );
        }
        cpu += parseTimes(await readFile(timesFile, "utf8"));
        if (result.exitCode !== 0) {
          const text = await readFile(logPath, "utf8");
          const errors = text.split("\n").filter((l) => /error|Error \d|\*\*\*/.test(l));
          throw new HarnessError(
            `make ${label} failed for ${spec.name} (exit ${result.exitCode}); full log: ${logPath}`,
            (errors.length ? errors : text.split("\n")).slice(-25),
          );
        }
      } finally {
        stop();
        logFile.end();
        await rm(timesFile, { force: true });
      }
    },
  };
}

const statsPath = (statsKey: string) => join(cachePaths.builds(), "stats", `${statsKey}.json`);

async function previousBuild(buildDir: string, statsKey: string): Promise<PreviousBuild> {
  const n = Number(await readFile(join(buildDir, ".kho-objects"), "utf8").catch(() => ""));
  const scratch = await readFile(statsPath(statsKey), "utf8").then(
    (text) => JSON.parse(text) as { objects: number; buildMs: number },
    () => undefined,
  );
  // A build directory without a finished configure+build of its own compiles from scratch.
  const fresh = !(await stat(join(buildDir, "vmlinux")).catch(() => undefined));
  return { objects: n > 0 && !fresh ? n : undefined, scratch };
}

async function recordBuild(
  buildDir: string,
  statsKey: string,
  b: { objects: number; buildMs: number; fromScratch: boolean },
): Promise<void> {
  await writeFile(join(buildDir, ".kho-objects"), String(b.objects));
  if (!b.fromScratch) return;
  await mkdir(join(cachePaths.builds(), "stats"), { recursive: true });
  await writeFileAtomic(
    statsPath(statsKey),
    JSON.stringify({ objects: b.objects, buildMs: b.buildMs }) + "\n",
  );
}
