// Builds the kho_harness test module (guest/kmod) out of tree against a cached kernel's O=
// build directory. The source is copied into the cache first, so the repository stays clean,
// and the .ko is cached by (module source hash, kernel cache key).
import { createHash } from "node:crypto";
import { access, copyFile, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { archSpec } from "../arch.js";
import { HarnessError } from "../errors.js";
import type { CachedKernel } from "../kernel/cache.js";
import { cacheRoot, guestDir } from "../paths.js";
import { sha256File } from "../util/hash.js";
import { sharedBuild, workPath } from "../util/build-slot.js";
import { buildOnce } from "../util/entry-lock.js";
import { stderrLogger } from "../util/log.js";

export const KMOD_DIR = guestDir("kmod");
export const KMOD_NAME = "kho_harness";
/** The files that decide the build (README.md is documentation only). */
export const KMOD_SOURCES: readonly string[] = ["kho_harness.c", "Kbuild", "Makefile"];

/** Where built modules are kept: one folder per (kernel key, source hash). */
export function kmodCacheDir(): string {
  return join(cacheRoot(), "kmod");
}

/** Hash of the module's sources: names and bytes, in a fixed order. */
export async function kmodSourceHash(dir = KMOD_DIR): Promise<string> {
  const hash = createHash("sha256");
  for (const name of KMOD_SOURCES) {
    hash.update(`${name}\0`);
    hash.update(await readFile(join(dir, name)));
    hash.update("\0");
  }
  return hash.digest("hex").slice(0, 16);
}

/**
 * Compiles guest/kmod against `kernel` and returns the path of kho_harness.ko. A module already
 * built from the same sources for the same kernel entry is reused.
 */
export async function buildKmod(kernel: CachedKernel): Promise<string> {
  const entry = join(kmodCacheDir(), `${kernel.manifest.key}-${await kmodSourceHash()}`);
  const ko = join(entry, `${KMOD_NAME}.ko`);
  const built = async () => ((await exists(ko)) ? ko : undefined);
  return sharedBuild(entry, () =>
    buildOnce(
      `${entry}.lock`,
      `building the test module for ${kernel.manifest.arch}`,
      { log: stderrLogger },
      built,
      () => compileKmod(kernel, entry, ko),
    ),
  );
}

async function compileKmod(kernel: CachedKernel, entry: string, ko: string): Promise<string> {
  const { manifest } = kernel;
  const spec = archSpec(manifest.arch);

  await checkBuildDir(kernel);
  // Build in a private folder and rename it into place: a half-built entry is never visible.
  const work = workPath(entry);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  await Promise.all(KMOD_SOURCES.map((name) => copyFile(join(KMOD_DIR, name), join(work, name))));

  const args = ["-C", manifest.buildDir, `M=${work}`, `ARCH=${spec.kernelArch}`];
  if (spec.crossCompile) args.push(`CROSS_COMPILE=${spec.crossCompile}`);
  args.push(`-j${cpus().length}`, "modules");
  const r = await execa("make", args, { reject: false, all: true, env: { LC_ALL: "C" } });
  if (r.failed) {
    await rm(work, { recursive: true, force: true });
    const why = r.code === "ENOENT" ? "make is not installed" : `exit ${r.exitCode ?? r.shortMessage}`;
    throw new HarnessError(
      `building the ${KMOD_NAME} module against ${manifest.kernelRelease} (${manifest.arch}) failed (${why})`,
      makeEvidence(r.all ?? ""),
    );
  }
  const builtKo = join(work, `${KMOD_NAME}.ko`);
  const machine = await elfMachine(builtKo);
  if (machine !== spec.elfMachine) {
    await rm(work, { recursive: true, force: true });
    throw new HarnessError(
      `make built ${KMOD_NAME}.ko for ELF machine ${machine ?? "(none)"}, not ${manifest.arch} (${spec.elfMachine})`,
      makeEvidence(r.all ?? ""),
    );
  }
  try {
    await rename(work, entry);
  } catch (err) {
    // Another build of the same entry finished first: keep it, drop ours.
    await rm(work, { recursive: true, force: true });
    if (!(await exists(ko))) throw err;
  }
  return ko;
}

/**
 * The O= directory is shared by every kernel built from the same tree and arch, so it may now
 * hold a later build than this cache entry: building against it would give a module whose
 * vermagic or struct layouts do not match the kernel that boots. Throws the HarnessError that
 * buildKmod would.
 */
export async function checkBuildDir(kernel: CachedKernel): Promise<void> {
  const { manifest } = kernel;
  const dir = manifest.buildDir;
  const [release, symvers, configHash] = await Promise.all([
    readFile(join(dir, "include", "config", "kernel.release"), "utf8").then(
      (t) => t.trim(),
      () => undefined,
    ),
    exists(join(dir, "Module.symvers")),
    sha256File(join(dir, ".config")).catch(() => undefined),
  ]);
  if (release === undefined || !symvers) {
    throw new HarnessError(
      `the kernel build directory ${dir} is missing or incomplete; rebuild the ${manifest.arch} kernel (kho kernel build)`,
      [
        `include/config/kernel.release: ${release ?? "absent"}`,
        `Module.symvers: ${symvers ? "present" : "absent"}`,
      ],
    );
  }
  if (release !== manifest.kernelRelease || configHash !== manifest.configSha256) {
    throw new HarnessError(
      `the kernel build directory ${dir} now holds a different build than cache entry ${manifest.key}; rebuild that kernel before building the module`,
      [
        `release: build dir ${release}, entry ${manifest.kernelRelease}`,
        `.config sha256: build dir ${configHash ?? "absent"}, entry ${manifest.configSha256}`,
      ],
    );
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** e_machine of an ELF file, or undefined when it is not one. */
async function elfMachine(path: string): Promise<number | undefined> {
  const fh = await open(path, "r").catch(() => undefined);
  if (!fh) return undefined;
  try {
    const header = Buffer.alloc(20);
    const { bytesRead } = await fh.read(header, 0, 20, 0);
    if (bytesRead < 20 || header.readUInt32BE(0) !== 0x7f454c46) return undefined;
    return header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
  } finally {
    await fh.close();
  }
}

/** The compiler's error and warning lines (the cause), then make's last lines. */
export function makeEvidence(text: string): string[] {
  const lines = text.trimEnd().split("\n");
  const diagnostics = lines.filter((l) => /\b(error|warning):|^make(\[\d+\])?: \*\*\*/.test(l)).slice(0, 12);
  const tail = lines.slice(-8).filter((l) => !diagnostics.includes(l));
  return tail.length && diagnostics.length ? [...diagnostics, "...", ...tail] : [...diagnostics, ...tail];
}
