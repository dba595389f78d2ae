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
import { findInPath, requireTools } from "../host/tools.js";
import { cachePaths } from "../paths.js";
import { cacheKey, rememberedForFile, sha256, sha256File } from "../util/hash.js";
import { formatDuration, heartbeat, type Logger } from "../util/log.js";
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
const RECIPE_VERSION = "1";

export interface BuildRequest {
  readonly arch: ArchName;
  readonly source: KernelSource;
  readonly userFragments: readonly string[];
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
  const [fragments, compiler] = await Promise.all([
    loadFragments(spec, req.userFragments),
    compilerVersion(spec),
  ]);
  const fragmentHashes = fragments.map((f) => ({ name: basename(f.path), sha256: sha256(f.text) }));
  const key = cacheKey({
    recipe: RECIPE_VERSION,
    arch: spec.name,
    source: req.source.identity,
    fragments: JSON.stringify(fragmentHashes),
    compiler,
  });

  const found = await lookupKernel(key);
  if (found.state === "hit") {
    return { kernel: found.kernel, cached: true, ms: performance.now() - started };
  }
  if (req.cachedOnly) {
    throw new KernelNotCached(
      `no cached ${spec.name} kernel for ${req.source.identity} (${found.state === "corrupt" ? `entry ${key} is corrupt` : `key ${key}`}): build it with kho kernel build --arch ${spec.name}${req.source.kind === "debian" ? ` --series ${req.source.series}` : ` --src ${req.source.tree}`}`,
    );
  }
  if (found.state === "corrupt") log(`# cache entry ${key} is incomplete (${found.reason}): rebuilding it`);
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

  const out = entryDir(key);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const buildDir = join(cachePaths.builds(), `${spec.name}-${sha256(req.source.tree).slice(0, 12)}`);
  await mkdir(buildDir, { recursive: true });
  const logPath = join(out, "build.log");
  const jobs = req.jobs ?? defaultJobs();
  const make = makeRunner(req.source.tree, buildDir, spec, logPath, log);
  const phaseMs: Record<string, number> = {};
  const phase = async (name: string, fn: () => Promise<void>) => {
    const t = performance.now();
    log(`# ${spec.name}: ${name}`);
    await fn();
    phaseMs[name] = Math.round(performance.now() - t);
  };

  log(
    `# ${spec.name}: building ${req.source.identity} with ${describeFragments(fragments)}, -j${jobs}, log ${logPath}`,
  );
  await phase("configure", async () => {
    await make.run(["defconfig"], "defconfig");
    const dotConfig = join(buildDir, ".config");
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
  const previousObjects = await previousObjectCount(buildDir);
  await phase("build", () => make.run([`-j${jobs}`, spec.imageTarget, "modules"], "build", previousObjects));
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
    phaseMs,
    objectCount: make.objects(),
  };
  await commitManifest(out, manifest);
  await recordObjectCount(buildDir, Math.max(make.objects(), previousObjects ?? 0));
  const ms = performance.now() - started;
  log(`# ${spec.name}: built ${release} in ${formatDuration(ms)}`);
  return {
    kernel: { dir: out, manifest, imagePath: join(out, image), configPath: join(out, "config") },
    cached: false,
    ms,
  };
}

const OBJECT_LINE = /^\s+(CC \[M\]|CC|AS|LD|AR|HOSTCC)\s+(\S+)/;

/** Runs make with the full output in the log file, a heartbeat line on the terminal, and the
 *  log's last lines as evidence when it fails. */
function makeRunner(tree: string, buildDir: string, spec: ArchSpec, logPath: string, log: Logger) {
  let objects = 0;
  let last = "";
  return {
    objects: () => objects,
    async run(targets: string[], label: string, expectedObjects?: number): Promise<void> {
      const args = ["-C", tree, `O=${buildDir}`, `ARCH=${spec.kernelArch}`, ...targets];
      if (spec.crossCompile) args.push(`CROSS_COMPILE=${spec.crossCompile}`);
      const logFile = createWriteStream(logPath, { flags: "a" });
      logFile.write(`\n$ make ${args.join(" ")}\n`);
      const stop = heartbeat(log, `${spec.name}: ${label}`, () => {
        const pct = expectedObjects
          ? ` (~${Math.min(99, Math.round((objects / expectedObjects) * 100))}%)`
          : "";
        return `${objects} objects${pct}${last ? `, last ${last}` : ""}`;
      });
      try {
        const child = execa("make", args, { all: true, buffer: false, reject: false, env: { LC_ALL: "C" } });
        const lines = createInterface({ input: child.all });
        lines.on("line", (line) => {
          logFile.write(line + "\n");
          const m = OBJECT_LINE.exec(line);
          if (m) {
            objects++;
            last = m[2] ?? "";
          }
        });
        const result = await child;
        await new Promise((resolve) => logFile.end(resolve));
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
      }
    },
  };
}

async function previousObjectCount(buildDir: string): Promise<number | undefined> {
  const text = await readFile(join(buildDir, ".kho-objects"), "utf8").catch(() => "");
  const n = Number(text);
  return n > 0 ? n : undefined;
}

async function recordObjectCount(buildDir: string, n: number): Promise<void> {
  await writeFile(join(buildDir, ".kho-objects"), String(n));
}
