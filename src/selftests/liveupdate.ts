// Builds the kernel's own liveupdate selftests (tools/testing/selftests/liveupdate/) as static
// binaries for a guest arch, against the uapi headers installed with the kernel under test.
//
// Why not run their Makefile: its test objects have no $(OUTPUT)/ prefix (`TEST_O := liveupdate.o`
// ...), so even with OUTPUT= make writes liveupdate.o and .d files into the source tree, which
// is shared and must stay clean. We run the same commands ourselves instead and check, on every
// build, that the Makefile still lists the programs, library sources and CFLAGS we mirror.
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { execa } from "execa";
import { archSpec, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import type { CachedKernel } from "../kernel/cache.js";
import { cacheRoot } from "../paths.js";
import { LIVEUPDATE_SELFTESTS, type LiveupdateSelftestName } from "./liveupdate-specs.js";
import { workPath } from "../util/build-slot.js";
import { buildOnce } from "../util/entry-lock.js";
import { stderrLogger } from "../util/log.js";

export * from "./ktap.js";
export * from "./liveupdate-specs.js";

/** Bump when the recipe below changes in a way the cache key does not capture. */
const RECIPE_VERSION = "1";
export const SELFTEST_DIR = "tools/testing/selftests/liveupdate";
/**
 * The helper library linked into every program, in the two layouts upstream has used: 7.2's
 * Makefile says `LIB_C += luo_test_utils.c` (next to the tests); 7.3 moved it to `lib/`
 * (`include lib/libliveupdate.mk`: `LIBLIVEUPDATE_C := lu_utils.c`, `-I lib/include`).
 */
interface HelperLibrary {
  readonly layout: "LIB_C" | "libliveupdate.mk";
  /** Absolute paths of the library's C files. */
  readonly sources: readonly string[];
  /** Extra `-I` folders the library's header lives in. */
  readonly includeDirs: readonly string[];
}
/** Files shipped beside the binaries (TEST_FILES, plus the kernel config fragment they need). */
const EXTRA_FILES = ["do_kexec.sh", "config"];
/**
 * lib.mk adds `-D_GNU_SOURCE= -I<selftests>`, the Makefile `$(KHDR_INCLUDES) -Wall -O2
 * -Wno-unused-function -MD`. -MD only writes dependency files; our cache key hashes the inputs.
 */
const MAKEFILE_CFLAGS = ["-Wall", "-O2", "-Wno-unused-function"];
/** Static, because the guest userspace has no matching libc (USERLDFLAGS=-static upstream). */
const LDFLAGS = ["-static"];

export interface SelftestBinaries {
  readonly arch: ArchName;
  /** Cache key: sources, compiler, libc, headers and recipe. */
  readonly key: string;
  /** Folder holding the binaries, do_kexec.sh, config and build.json. */
  readonly dir: string;
  /** Absolute path of each test binary. */
  readonly binaries: Readonly<Record<LiveupdateSelftestName, string>>;
  /** The tree's do_kexec.sh (`kexec -l -s --reuse-cmdline $KERNEL [--initrd=$INITRAMFS]; kexec -e`). */
  readonly doKexec: string;
  /** `gcc --version`'s first line. */
  readonly compiler: string;
  readonly cached: boolean;
  /** Wall time of this call. */
  readonly ms: number;
}

export interface SelftestBuildInput {
  readonly arch: ArchName;
  /** Kernel source tree holding tools/testing/selftests/liveupdate/. */
  readonly sourceTree: string;
  /** `INSTALL_HDR_PATH/include` from `make headers_install` of the kernel under test. */
  readonly uapiInclude: string;
  /** Folder for the keyed build folders; default `cacheRoot()/selftests`. */
  readonly outDir?: string;
}

/** Builds (or reuses) the liveupdate selftests for a cached kernel's arch, headers and tree. */
export function buildLiveupdateSelftests(
  kernel: CachedKernel,
  opts: { outDir?: string } = {},
): Promise<SelftestBinaries> {
  const m = kernel.manifest;
  return buildLiveupdateSelftestsFrom({
    arch: m.arch,
    sourceTree: m.sourceTree,
    uapiInclude: join(kernel.dir, m.headersDir, "include"),
    ...opts,
  });
}

/** The same, from explicit inputs (e.g. headers installed by hand, before a kernel exists). */
export async function buildLiveupdateSelftestsFrom(input: SelftestBuildInput): Promise<SelftestBinaries> {
  const started = performance.now();
  const cc = `${archSpec(input.arch).crossCompile}gcc`;
  const srcDir = join(input.sourceTree, SELFTEST_DIR);
  const selftests = join(input.sourceTree, "tools/testing/selftests");
  const library = await checkMakefile(srcDir);
  const [sources, compiler, headers] = await Promise.all([
    sourceIdentity(srcDir, selftests),
    compilerIdentity(cc, input.arch),
    headerIdentity(input.uapiInclude),
  ]);
  const key = createHash("sha256")
    .update([RECIPE_VERSION, input.arch, sources, compiler.identity, headers].join("\0"))
    .digest("hex")
    .slice(0, 16);
  const root = input.outDir ?? join(cacheRoot(), "selftests");
  const dir = join(root, `liveupdate-${input.arch}-${key}`);
  const result = (cached: boolean): SelftestBinaries => ({
    arch: input.arch,
    key,
    dir,
    binaries: Object.fromEntries(LIVEUPDATE_SELFTESTS.map((s) => [s.name, join(dir, s.binary)])) as Record<
      LiveupdateSelftestName,
      string
    >,
    doKexec: join(dir, "do_kexec.sh"),
    compiler: compiler.firstLine,
    cached,
    ms: performance.now() - started,
  });
  // build.json is written last, so its presence means the folder is complete.
  const built = async () => ((await exists(join(dir, "build.json"))) ? result(true) : undefined);
  const what = `building the ${input.arch} liveupdate selftests`;
  return buildOnce(`${dir}.lock`, what, { log: stderrLogger }, built, async () => {
    // Build in a private folder and rename it into place: a concurrent build or a crash never
    // leaves a half-filled folder under the final name.
    await mkdir(root, { recursive: true });
    const tmp = workPath(join(root, `.${key}`));
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    try {
      const cflags = [
        "-D_GNU_SOURCE=",
        "-I",
        selftests,
        ...library.includeDirs.flatMap((d) => ["-I", d]),
        "-isystem",
        input.uapiInclude,
        ...MAKEFILE_CFLAGS,
      ];
      const lib = library.sources.map((src) => ({
        src,
        obj: join(tmp, basename(src).replace(/\.c$/, ".o")),
      }));
      await settleAll(lib.map((l) => compile(cc, [...cflags, "-c", l.src, "-o", l.obj], input)));
      const libObjs = lib.map((l) => l.obj);
      await settleAll(
        LIVEUPDATE_SELFTESTS.map((s) =>
          compile(
            cc,
            [...cflags, ...LDFLAGS, join(srcDir, s.source), ...libObjs, "-o", join(tmp, s.binary)],
            input,
          ),
        ),
      );
      await Promise.all(libObjs.map((o) => rm(o)));
      await Promise.all(EXTRA_FILES.map((f) => copyFile(join(srcDir, f), join(tmp, f))));
      const manifest = {
        key,
        arch: input.arch,
        sourceTree: input.sourceTree,
        uapiInclude: input.uapiInclude,
        compiler: compiler.firstLine,
        library: { layout: library.layout, sources: library.sources.map((f) => relative(srcDir, f)) },
        cflags: [...cflags, ...LDFLAGS],
        programs: LIVEUPDATE_SELFTESTS.map((s) => s.binary),
        builtAt: new Date().toISOString(),
        buildMs: Math.round(performance.now() - started),
      };
      await writeFile(join(tmp, "build.json"), JSON.stringify(manifest, null, 2) + "\n");
      await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
        // Another build of the same key finished first: its result is equivalent.
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
        await rm(tmp, { recursive: true, force: true });
      });
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    return result(false);
  });
}

/** Like Promise.all, but waits for every compiler to exit before reporting the first failure,
 *  so no gcc is still writing into the folder we are about to remove. */
async function settleAll(jobs: readonly Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(jobs)).find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

async function compile(cc: string, args: readonly string[], input: SelftestBuildInput): Promise<void> {
  const r = await execa(cc, args, { reject: false, all: true });
  if (!r.failed) return;
  const output = r.all ?? r.shortMessage;
  const hint = /cannot find -lc\b/.test(output)
    ? `; the static C library for ${input.arch} is missing (Debian: libc6-dev-${archSpec(input.arch).debianArch}-cross)`
    : "";
  throw new HarnessError(
    `compiling the liveupdate selftests for ${input.arch} with ${cc} failed${hint}`,
    compilerEvidence(output),
  );
}

/** The compiler's error lines first (the cause), then its last lines for context. */
function compilerEvidence(text: string): string[] {
  const lines = text.trimEnd().split("\n");
  const errors = lines.filter((l) => /\berror\b|undefined reference|cannot find/.test(l)).slice(0, 10);
  const tail = lines.slice(-15).filter((l) => !errors.includes(l));
  return tail.length ? [...errors, ...(errors.length ? ["..."] : []), ...tail] : errors;
}

/**
 * Fails loudly if the tree's Makefile no longer builds what we build: a renamed program or a new
 * library file would otherwise give binaries the specs do not describe. Returns the helper
 * library the Makefile links in.
 */
async function checkMakefile(srcDir: string): Promise<HelperLibrary> {
  const text = await readFile(join(srcDir, "Makefile"), "utf8").catch(() => undefined);
  if (text === undefined) {
    throw new HarnessError(`this kernel tree has no liveupdate selftests (${srcDir}/Makefile is missing)`);
  }
  const problems: string[] = [];
  const programs = [...makeValues(text, "TEST_GEN_PROGS"), ...makeValues(text, "TEST_GEN_PROGS_EXTENDED")];
  const known = LIVEUPDATE_SELFTESTS.map((s) => s.binary);
  if (!same([...programs].sort(), [...known].sort())) {
    problems.push(`programs: Makefile has [${programs.join(" ")}], the harness knows [${known.join(" ")}]`);
  }
  const cflags = makeValues(text, "CFLAGS").filter((f) => f !== "$(KHDR_INCLUDES)" && f !== "-MD");
  if (!same(cflags, MAKEFILE_CFLAGS)) problems.push(`CFLAGS: Makefile has [${cflags.join(" ")}]`);
  const library = await helperLibrary(srcDir, text, problems);
  if (problems.length || !library) {
    throw new HarnessError(
      `the liveupdate selftests Makefile in ${srcDir} no longer matches what the harness builds`,
      problems,
    );
  }
  return library;
}

/** The words assigned to a make variable (`=`, `:=`, `+=`), every assignment together. */
function makeValues(text: string, variable: string): string[] {
  return [...text.matchAll(new RegExp(`^${variable}\\s*[+:]?=\\s*(.*)$`, "gm"))].flatMap((m) =>
    (m[1] ?? "").trim().split(/\s+/).filter(Boolean),
  );
}

async function helperLibrary(
  srcDir: string,
  makefile: string,
  problems: string[],
): Promise<HelperLibrary | undefined> {
  const libC = makeValues(makefile, "LIB_C");
  const includesMk = /^include\s+lib\/libliveupdate\.mk\s*$/m.test(makefile);
  if (libC.length && !includesMk) {
    return { layout: "LIB_C", sources: libC.map((c) => join(srcDir, c)), includeDirs: [] };
  }
  if (includesMk && !libC.length) {
    const mk = await readFile(join(srcDir, "lib/libliveupdate.mk"), "utf8").catch(() => undefined);
    const files = mk === undefined ? [] : makeValues(mk, "LIBLIVEUPDATE_C");
    const srcdir = mk === undefined ? [] : makeValues(mk, "LIBLIVEUPDATE_SRCDIR");
    const include = mk === undefined ? [] : makeValues(mk, "CFLAGS");
    if (
      files.length &&
      same(srcdir, ["$(selfdir)/liveupdate/lib"]) &&
      same(include, ["-I$(LIBLIVEUPDATE_SRCDIR)/include"])
    ) {
      const lib = join(srcDir, "lib");
      return {
        layout: "libliveupdate.mk",
        sources: files.map((c) => join(lib, c)),
        includeDirs: [join(lib, "include")],
      };
    }
    problems.push(
      mk === undefined
        ? "the Makefile includes lib/libliveupdate.mk, which is missing"
        : `lib/libliveupdate.mk: LIBLIVEUPDATE_C [${files.join(" ")}], LIBLIVEUPDATE_SRCDIR [${srcdir.join(" ")}], CFLAGS [${include.join(" ")}]; the harness knows lu_utils.c in $(selfdir)/liveupdate/lib with -I$(LIBLIVEUPDATE_SRCDIR)/include`,
    );
    return undefined;
  }
  problems.push(
    libC.length
      ? `the Makefile has both LIB_C [${libC.join(" ")}] and lib/libliveupdate.mk`
      : "the Makefile names no helper library (neither LIB_C nor lib/libliveupdate.mk)",
  );
  return undefined;
}

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.join(" ") === b.join(" ");
}

/** Hash of every input file the compile reads from the tree (lib/ included). */
async function sourceIdentity(srcDir: string, selftests: string): Promise<string> {
  const own = (await readdir(srcDir, { recursive: true })).filter(
    (f) => /\.([ch]|mk)$/.test(f) || EXTRA_FILES.includes(f) || f === "Makefile",
  );
  const files = [
    ...own.sort().map((f) => join(srcDir, f)),
    join(selftests, "kselftest.h"),
    join(selftests, "kselftest_harness.h"),
  ];
  const hash = createHash("sha256");
  for (const f of files) hash.update(`\0${relative(selftests, f)}\0`).update(await readFile(f));
  return hash.digest("hex");
}

/** The compiler's version and the static libc it links (a libc update changes every binary). */
async function compilerIdentity(
  cc: string,
  arch: ArchName,
): Promise<{ identity: string; firstLine: string }> {
  const r = await execa(cc, ["--version"], { reject: false });
  if (r.failed) {
    const why = r.code === "ENOENT" ? "is not installed" : `does not run (${r.shortMessage})`;
    throw new HarnessError(`${cc} ${why}; install ${archSpec(arch).compilerPackage}`);
  }
  const libc = (await execa(cc, ["-print-file-name=libc.a"], { reject: false })).stdout.trim();
  const libcStat = await stat(libc).then(
    (s) => `${s.size}:${s.mtimeMs}`,
    () => "absent",
  );
  return { identity: `${r.stdout}\0${libc}\0${libcStat}`, firstLine: r.stdout.split("\n")[0] ?? cc };
}

/**
 * Which header tree this is, by content: every file under it (glibc's own headers reach into
 * linux/ and asm/ too, so hashing only linux/liveupdate.h would miss changes).
 */
async function headerIdentity(include: string): Promise<string> {
  const real = await realpath(include).catch(() => {
    throw new HarnessError(`the kernel's uapi headers are missing: ${include} does not exist`);
  });
  const files = (await readdir(real, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  if (!files.includes(join(real, "linux", "liveupdate.h"))) {
    throw new HarnessError(`${include} has no linux/liveupdate.h: these headers predate LUO`);
  }
  const hash = createHash("sha256");
  for (const f of files) hash.update(`\0${relative(real, f)}\0`).update(await readFile(f));
  return hash.digest("hex");
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
