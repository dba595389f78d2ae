// The kernel's own KHO selftest payload (tools/testing/selftests/kho/): its nolibc init, built
// statically the way vmtest.sh builds it, cached by content, and the initrd vmtest.sh packs
// around it (the init plus the kernel it kexecs into, as /kernel).
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rename, rm, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { execa } from "execa";
import { archSpec, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { CpioWriter } from "../image/cpio.js";
import { cacheRoot } from "../paths.js";
import { workPath } from "../util/build-slot.js";

export const KHO_SELFTEST_DIR = "tools/testing/selftests/kho";
const NOLIBC_DIR = "tools/include/nolibc";
/** Bump when the recipe changes in a way the key does not capture. */
const RECIPE_VERSION = "1";

/** vmtest.sh's mkinitrd: `$CROSS_COMPILE gcc <these> -I $headers/include -I nolibc -o init init.c`. */
export const VMTEST_CFLAGS = [
  "-s",
  "-static",
  "-Os",
  "-nostdinc",
  "-nostdlib",
  "-fno-asynchronous-unwind-tables",
  "-fno-ident",
] as const;

export interface SelftestInit {
  readonly path: string;
  readonly key: string;
  readonly cached: boolean;
  readonly compiler: string;
}

export interface SelftestInitInput {
  readonly arch: ArchName;
  /** Kernel source tree holding tools/testing/selftests/kho/ and tools/include/nolibc/. */
  readonly sourceTree: string;
  /** `INSTALL_HDR_PATH/include` of the kernel under test. */
  readonly uapiInclude: string;
  /** Default `cacheRoot()/bench`. */
  readonly outDir?: string;
}

/** Every file under `dir`, sorted, hashed with its relative path. */
async function treeHash(hash: ReturnType<typeof createHash>, dir: string, tag: string): Promise<void> {
  const files = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const f of files) hash.update(`\0${tag}/${relative(dir, f)}\0`).update(await readFile(f));
}

/** Builds (or reuses) the selftest's init for `arch`. */
export async function buildSelftestInit(input: SelftestInitInput): Promise<SelftestInit> {
  const cc = `${archSpec(input.arch).crossCompile}gcc`;
  const initC = join(input.sourceTree, KHO_SELFTEST_DIR, "init.c");
  const nolibc = join(input.sourceTree, NOLIBC_DIR);
  const source = await readFile(initC).catch(() => {
    throw new HarnessError(`this kernel tree has no KHO selftest (${initC} is missing)`);
  });
  const version = await execa(cc, ["--version"], { reject: false });
  if (version.failed) {
    throw new HarnessError(`${cc} does not run; install ${archSpec(input.arch).compilerPackage}`, [
      version.shortMessage ?? "",
    ]);
  }
  const hash = createHash("sha256").update(`${RECIPE_VERSION}\0${input.arch}\0${version.stdout}\0`);
  hash.update(VMTEST_CFLAGS.join(" ")).update("\0init.c\0").update(source);
  await treeHash(hash, nolibc, "nolibc");
  await treeHash(hash, input.uapiInclude, "uapi");
  const key = hash.digest("hex").slice(0, 16);
  const dir = input.outDir ?? join(cacheRoot(), "bench");
  const path = join(dir, `kho-selftest-init-${input.arch}-${key}`);
  const compiler: string = version.stdout.split("\n")[0] ?? cc;
  if (
    await stat(path).then(
      (s) => s.isFile(),
      () => false,
    )
  )
    return { path, key, cached: true, compiler };

  await mkdir(dir, { recursive: true });
  const tmp = workPath(path);
  const r = await execa(cc, [...VMTEST_CFLAGS, "-I", input.uapiInclude, "-I", nolibc, "-o", tmp, initC], {
    reject: false,
    all: true,
  });
  if (r.failed) {
    await rm(tmp, { force: true });
    throw new HarnessError(
      `compiling the KHO selftest init for ${input.arch} with ${cc} failed`,
      (r.all ?? r.shortMessage).trimEnd().split("\n").slice(-15),
    );
  }
  await rename(tmp, path);
  return { path, key, cached: false, compiler };
}

/** vmtest.sh's cpio_list: /dev, /proc, /debugfs, /dev/console, /init and /kernel. */
export function selftestInitrd(init: Uint8Array, kernel: Uint8Array): Uint8Array {
  return new CpioWriter()
    .dir("dev", 0o755)
    .dir("proc", 0o755)
    .dir("debugfs", 0o755)
    .device("dev/console", "c", 5, 1, 0o600)
    .file("init", init, 0o755)
    .file("kernel", kernel, 0o644)
    .finish();
}
