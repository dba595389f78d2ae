// Builds the kernel's liveupdate selftests for each arch that has a cached kernel, and checks the
// results are static executables for that arch. The failure paths need only the source tree.
import { access, copyFile, mkdir, mkdtemp, readdir, rm, writeFile, appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { archSpec, ARCH_NAMES } from "../../src/arch.js";
import { ElfReader } from "../../src/elf/reader.js";
import { HarnessError } from "../../src/errors.js";
import { newestKernel } from "../../src/kernel/cache.js";
import { cachePaths } from "../../src/paths.js";
import {
  buildLiveupdateSelftests,
  buildLiveupdateSelftestsFrom,
  LIVEUPDATE_SELFTESTS,
  SELFTEST_DIR,
} from "../../src/selftests/liveupdate.js";

const ET_EXEC = 2;
const PT_INTERP = 3;

const outDir = await mkdtemp(join(tmpdir(), "kho-selftests-"));
afterAll(() => rm(outDir, { recursive: true, force: true }));

for (const arch of ARCH_NAMES) {
  const kernel = await newestKernel(arch);
  if (!kernel)
    console.log(`selftests-build: skipping ${arch}: no cached ${arch} kernel (run kho kernel build)`);

  describe.skipIf(!kernel)(`liveupdate selftests for ${arch}`, () => {
    it("builds static executables for the arch, then reuses them", { timeout: 60_000 }, async () => {
      const built = await buildLiveupdateSelftests(kernel!, { outDir });
      console.log(`selftests-build: ${arch} built in ${Math.round(built.ms)} ms with ${built.compiler}`);
      expect(built.cached).toBe(false);
      for (const spec of LIVEUPDATE_SELFTESTS) {
        const elf = await ElfReader.open(built.binaries[spec.name]);
        try {
          expect(elf.header.machine, spec.name).toBe(archSpec(arch).elfMachine);
          expect(elf.header.type, spec.name).toBe(ET_EXEC);
          expect(
            elf.programHeaders.some((p) => p.type === PT_INTERP),
            `${spec.name} has PT_INTERP`,
          ).toBe(false);
        } finally {
          await elf.close();
        }
      }
      await access(built.doKexec);

      const again = await buildLiveupdateSelftests(kernel!, { outDir });
      expect(again).toMatchObject({ cached: true, dir: built.dir, key: built.key });
    });
  });
}

/** A kernel tree in the cache that has the liveupdate selftests, if any. */
async function findTree(): Promise<string | undefined> {
  const names = await readdir(cachePaths.sources()).catch(() => [] as string[]);
  for (const name of names) {
    const tree = join(cachePaths.sources(), name);
    const ok = await access(join(tree, SELFTEST_DIR, "Makefile")).then(
      () => true,
      () => false,
    );
    if (ok) return tree;
  }
  return undefined;
}

const tree = await findTree();
if (!tree) console.log("selftests-build: skipping failure paths: no kernel source tree in the cache");

describe.skipIf(!tree)("liveupdate selftests build failures", () => {
  /** A minimal fake tree: the selftests and their headers, plus a uapi dir with liveupdate.h. */
  async function fakeTree(): Promise<{ root: string; include: string }> {
    const root = await mkdtemp(join(outDir, "tree-"));
    const from = join(tree!, "tools/testing/selftests");
    const to = join(root, "tools/testing/selftests");
    await mkdir(join(to, "liveupdate"), { recursive: true });
    for (const f of ["kselftest.h", "kselftest_harness.h"]) await copyFile(join(from, f), join(to, f));
    for (const f of await readdir(join(from, "liveupdate"))) {
      await copyFile(join(from, "liveupdate", f), join(to, "liveupdate", f));
    }
    const include = join(root, "usr/include");
    await mkdir(join(include, "linux"), { recursive: true });
    await copyFile(join(tree!, "include/uapi/linux/liveupdate.h"), join(include, "linux/liveupdate.h"));
    return { root, include };
  }

  it("reports compile errors with the compiler's error lines as evidence", async () => {
    const { root, include } = await fakeTree();
    await appendFile(
      join(root, SELFTEST_DIR, "luo_kexec_simple.c"),
      '\n#error "kho-harness injected error"\n',
    );
    const err = await buildLiveupdateSelftestsFrom({
      arch: "x86_64",
      sourceTree: root,
      uapiInclude: include,
      outDir: join(root, "out"),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HarnessError);
    const h = err as HarnessError;
    expect(h.message).toMatch(/compiling the liveupdate selftests for x86_64/);
    expect(h.evidence.some((l) => l.includes("kho-harness injected error"))).toBe(true);
    // Nothing half-built is left under a final name.
    expect((await readdir(join(root, "out"))).filter((d) => !d.startsWith("."))).toEqual([]);
  });

  it("refuses a Makefile that builds programs the harness does not describe", async () => {
    const { root, include } = await fakeTree();
    await appendFile(join(root, SELFTEST_DIR, "Makefile"), "\nTEST_GEN_PROGS_EXTENDED += luo_new_test\n");
    const err = await buildLiveupdateSelftestsFrom({
      arch: "x86_64",
      sourceTree: root,
      uapiInclude: include,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HarnessError);
    expect((err as HarnessError).evidence.join("\n")).toContain("luo_new_test");
  });

  it("refuses headers without linux/liveupdate.h", async () => {
    const { root } = await fakeTree();
    const empty = join(root, "empty-include");
    await mkdir(empty);
    await writeFile(join(empty, "README"), "no headers\n");
    const err = await buildLiveupdateSelftestsFrom({
      arch: "x86_64",
      sourceTree: root,
      uapiInclude: empty,
    }).catch((e: unknown) => e);
    expect((err as HarnessError).message).toMatch(/no linux\/liveupdate\.h/);
  });
});
