// The kho_harness module build: source hashing, error evidence, and the builder's refusals
// (a build directory that is gone, incomplete, holds another build, or is not a kernel tree)
// always; a real out-of-tree build only when a cached kernel's build directory is usable
// (skipped otherwise, with the reason in the test's name).
import { cp, mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ARCH_NAMES, archSpec } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { MANIFEST_SCHEMA, newestKernel, type CachedKernel } from "../../src/kernel/cache.js";
import {
  buildKmod,
  checkBuildDir,
  KMOD_DIR,
  kmodCacheDir,
  kmodSourceHash,
  makeEvidence,
} from "../../src/image/kmod-build.js";
import { sha256 } from "../../src/util/hash.js";

const scratch = await mkdtemp(join(tmpdir(), "kmod-build-test-"));
afterAll(() => rm(scratch, { recursive: true, force: true }));

describe("kmodSourceHash", () => {
  it("is stable for the same bytes and changes with the source", async () => {
    const copy = join(scratch, "kmod");
    await cp(KMOD_DIR, copy, { recursive: true });
    const before = await kmodSourceHash(copy);
    expect(before).toBe(await kmodSourceHash(KMOD_DIR));
    expect(before).toMatch(/^[0-9a-f]{16}$/);
    await writeFile(join(copy, "README.md"), "docs do not count\n");
    expect(await kmodSourceHash(copy)).toBe(before);
    await writeFile(join(copy, "Kbuild"), "obj-m := other.o\n");
    expect(await kmodSourceHash(copy)).not.toBe(before);
  });
});

describe("makeEvidence", () => {
  it("puts the compiler's errors first, then make's last lines", () => {
    const log = [
      "make: Entering directory '/build'",
      "  CC [M]  kho_harness.o",
      "kho_harness.c:10:2: error: implicit declaration of function 'nope'",
      ...Array.from({ length: 30 }, (_, i) => `noise ${i}`),
      "make[1]: *** [Makefile:2000: kho_harness.o] Error 1",
      "make: *** [Makefile:248: __sub-make] Error 2",
    ].join("\n");
    const ev = makeEvidence(log);
    expect(ev[0]).toContain("error: implicit declaration");
    expect(ev).toContain("make: *** [Makefile:248: __sub-make] Error 2");
    expect(ev.filter((l) => l.includes("__sub-make"))).toHaveLength(1);
    expect(ev.length).toBeLessThan(20);
  });
});

const RELEASE = "7.2.13-kmod-test";
const CONFIG = "CONFIG_MODULES=y\n";
const CONFIG_SHA = sha256(CONFIG);

/** A cache entry whose build directory is `buildDir`; nothing of it but the manifest is read. */
function fakeKernel(buildDir: string, configSha256: string, kernelRelease = RELEASE): CachedKernel {
  return {
    dir: join(scratch, "entry"),
    imagePath: join(scratch, "entry", "bzImage"),
    configPath: join(scratch, "entry", "config"),
    manifest: {
      schema: MANIFEST_SCHEMA,
      key: "kmodtest00000000",
      arch: "x86_64",
      sourceIdentity: "test",
      sourceTree: join(scratch, "src"),
      buildDir,
      kernelRelease,
      compiler: "gcc",
      fragments: [],
      configSha256,
      image: "bzImage",
      imageSha256: "0".repeat(64),
      imageSize: 0,
      modulesDir: "modules",
      headersDir: "headers",
      builtAt: new Date(0).toISOString(),
      base: "lean",
      phaseMs: {},
      wallMs: 0,
      cpuSeconds: 0,
      objectCount: 0,
    },
  };
}

/** A build directory with the files checkBuildDir reads (only those present in `files`). */
async function buildDir(name: string, files: { release?: string; symvers?: boolean }): Promise<string> {
  const dir = join(scratch, name);
  await mkdir(join(dir, "include", "config"), { recursive: true });
  await writeFile(join(dir, ".config"), CONFIG);
  if (files.release !== undefined)
    await writeFile(join(dir, "include", "config", "kernel.release"), `${files.release}\n`);
  if (files.symvers) await writeFile(join(dir, "Module.symvers"), "");
  return dir;
}

async function failure(p: Promise<unknown>): Promise<HarnessError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HarnessError);
  return err as HarnessError;
}

describe("buildKmod refuses what it cannot build against", () => {
  // A cache of its own: a refusal must leave nothing in kmod/ (no entry, no work dir, no lock).
  beforeAll(() => {
    vi.stubEnv("KHO_CACHE_DIR", join(scratch, "cache"));
  });
  afterAll(() => {
    vi.unstubAllEnvs();
  });
  const leftovers = () => readdir(kmodCacheDir()).catch(() => []);

  it("names the missing files of a build directory that is gone or incomplete", async () => {
    const gone = join(scratch, "no-such-build-dir");
    const err = await failure(buildKmod(fakeKernel(gone, CONFIG_SHA)));
    expect(err.message).toBe(
      `the kernel build directory ${gone} is missing or incomplete; rebuild the x86_64 kernel (kho kernel build)`,
    );
    expect(err.evidence).toEqual(["include/config/kernel.release: absent", "Module.symvers: absent"]);

    const half = await buildDir("no-symvers", { release: RELEASE });
    const err2 = await failure(buildKmod(fakeKernel(half, CONFIG_SHA)));
    expect(err2.message).toContain(`the kernel build directory ${half} is missing or incomplete`);
    expect(err2.evidence).toEqual([`include/config/kernel.release: ${RELEASE}`, "Module.symvers: absent"]);
    expect(await leftovers()).toEqual([]);
  });

  it("refuses a build directory that now holds another build than the cache entry", async () => {
    const dir = await buildDir("other-build", { release: "7.2.14-later", symvers: true });
    const err = await failure(buildKmod(fakeKernel(dir, CONFIG_SHA)));
    expect(err.message).toBe(
      `the kernel build directory ${dir} now holds a different build than cache entry kmodtest00000000; rebuild that kernel before building the module`,
    );
    expect(err.evidence).toEqual([
      `release: build dir 7.2.14-later, entry ${RELEASE}`,
      `.config sha256: build dir ${CONFIG_SHA}, entry ${CONFIG_SHA}`,
    ]);
    // Same release, another .config: refused too.
    const err2 = await failure(buildKmod(fakeKernel(dir, "f".repeat(64), "7.2.14-later")));
    expect(err2.message).toContain("now holds a different build than cache entry kmodtest00000000");
    expect(err2.evidence[1]).toBe(`.config sha256: build dir ${CONFIG_SHA}, entry ${"f".repeat(64)}`);
    expect(await leftovers()).toEqual([]);
  });

  it("reports make's failure with its own lines when the directory is not a kernel tree", async () => {
    const dir = await buildDir("not-a-tree", { release: RELEASE, symvers: true });
    const kernel = fakeKernel(dir, CONFIG_SHA);
    await checkBuildDir(kernel); // the files are right: make is what fails
    const hasMake = (await execa("make", ["--version"], { reject: false })).exitCode === 0;
    const err = await failure(buildKmod(kernel));
    expect(err.message).toBe(
      `building the kho_harness module against ${RELEASE} (x86_64) failed (${hasMake ? "exit 2" : "make is not installed"})`,
    );
    if (hasMake)
      expect(err.evidence).toContainEqual(
        expect.stringMatching(/^make: \*\*\* No rule to make target 'modules'/),
      );
    else console.warn("kmod-build: make is not installed: make's own error lines not checked");
    // The private work directory the sources were copied into is removed, and the lock released.
    expect(await leftovers()).toEqual([]);
  });
});

/** The first cached kernel (newest per arch) whose build directory a module can be built against. */
async function usableKernel(): Promise<{ kernel: CachedKernel } | { reason: string }> {
  const kernels = (await Promise.all(ARCH_NAMES.map((a) => newestKernel(a)))).filter(
    (k): k is CachedKernel => k !== undefined,
  );
  if (kernels.length === 0) return { reason: "no kernel in the cache (run `kho kernel build`)" };
  const refusals: string[] = [];
  for (const kernel of kernels) {
    const refused = await checkBuildDir(kernel).then(
      () => undefined,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    if (refused === undefined) return { kernel };
    refusals.push(refused);
  }
  return { reason: refusals.join("; ") };
}

const usable = await usableKernel();
const skipReason = "reason" in usable ? usable.reason : undefined;
if (skipReason) console.warn(`kmod-build: real build skipped: ${skipReason}`);

describe("buildKmod against a cached kernel", () => {
  it.skipIf(skipReason !== undefined)(
    `builds kho_harness.ko for the kernel's arch and reuses it${skipReason ? ` (skipped: ${skipReason})` : ""}`,
    { timeout: 180_000 },
    async () => {
      if (!("kernel" in usable)) throw new Error("unreachable: skipped without a kernel");
      const { kernel } = usable;
      // Two scenarios of one `--jobs 2` run ask at once: one build, one module for both.
      const [ko, second] = await Promise.all([buildKmod(kernel), buildKmod(kernel)]);
      expect(second).toBe(ko);
      expect(ko).toMatch(/kho_harness\.ko$/);
      expect((await stat(ko)).size).toBeGreaterThan(1000);
      // An ELF relocatable (ET_REL) for the kernel's machine.
      const header = Buffer.alloc(20);
      const fh = await open(ko, "r");
      await fh.read(header, 0, 20, 0).finally(() => fh.close());
      expect(header.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
      expect(header.readUInt16LE(16)).toBe(1);
      expect(header.readUInt16LE(18)).toBe(archSpec(kernel.manifest.arch).elfMachine);
      const started = performance.now();
      expect(await buildKmod(kernel)).toBe(ko);
      expect(performance.now() - started).toBeLessThan(5_000);
    },
  );
});
