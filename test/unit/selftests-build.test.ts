// Builds the kernel's liveupdate selftests for every cached kernel (each arch and source tree: 7.2
// and 7.3 lay out their helper library differently), and checks the results are static
// executables for that arch. The failure paths need only the source tree.
import {
  access,
  appendFile,
  copyFile,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { archSpec, ARCH_NAMES, type ArchName } from "../../src/arch.js";
import { ElfReader } from "../../src/elf/reader.js";
import { HarnessError } from "../../src/errors.js";
import { listKernels, type CachedKernel } from "../../src/kernel/cache.js";
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

/** One cached kernel per arch and source tree (the newest of each). */
async function kernelsPerTree(arch: ArchName): Promise<CachedKernel[]> {
  const byTree = new Map<string, CachedKernel>();
  for (const { lookup } of await listKernels()) {
    if (lookup.state !== "hit" || lookup.kernel.manifest.arch !== arch) continue;
    const seen = byTree.get(lookup.kernel.manifest.sourceTree);
    if (!seen || seen.manifest.builtAt < lookup.kernel.manifest.builtAt)
      byTree.set(lookup.kernel.manifest.sourceTree, lookup.kernel);
  }
  return [...byTree.values()];
}

for (const arch of ARCH_NAMES) {
  const kernels = await kernelsPerTree(arch);
  if (!kernels.length)
    console.log(`selftests-build: skipping ${arch}: no cached ${arch} kernel (run kho kernel build)`);

  describe.skipIf(!kernels.length)(`liveupdate selftests for ${arch}`, () => {
    it.each(kernels.map((k) => [basename(k.manifest.sourceTree), k] as const))(
      "%s: builds static executables for the arch, then reuses them",
      { timeout: 60_000 },
      async (tree, kernel) => {
        // One folder per tree: two trees with the same selftests (a patched copy) share a key.
        const treeOut = join(outDir, `${arch}-${tree}`);
        const built = await buildLiveupdateSelftests(kernel, { outDir: treeOut });
        console.log(
          `selftests-build: ${arch} ${tree} built in ${Math.round(built.ms)} ms with ${built.compiler}`,
        );
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

        const again = await buildLiveupdateSelftests(kernel, { outDir: treeOut });
        expect(again).toMatchObject({ cached: true, dir: built.dir, key: built.key });
      },
    );
  });
}

/** Every kernel tree in the cache that has the liveupdate selftests. */
async function findTrees(): Promise<string[]> {
  const names = (await readdir(cachePaths.sources()).catch(() => [] as string[])).sort();
  const trees: string[] = [];
  for (const name of names) {
    const tree = join(cachePaths.sources(), name);
    const ok = await access(join(tree, SELFTEST_DIR, "Makefile")).then(
      () => true,
      () => false,
    );
    if (ok) trees.push(tree);
  }
  return trees;
}

const trees = await findTrees();
if (!trees.length) console.log("selftests-build: skipping failure paths: no kernel source tree in the cache");

describe.skipIf(!trees.length).each(trees.map((t) => [basename(t), t] as const))(
  "liveupdate selftests from the tree (%s)",
  (_name, tree) => {
    /** A minimal fake tree: the selftests and their headers, plus a uapi dir with liveupdate.h. */
    async function fakeTree(): Promise<{ root: string; include: string }> {
      const root = await mkdtemp(join(outDir, "tree-"));
      const from = join(tree, "tools/testing/selftests");
      const to = join(root, "tools/testing/selftests");
      await mkdir(join(to, "liveupdate"), { recursive: true });
      for (const f of ["kselftest.h", "kselftest_harness.h"]) await copyFile(join(from, f), join(to, f));
      await cp(join(from, "liveupdate"), join(to, "liveupdate"), { recursive: true });
      const include = join(root, "usr/include");
      await mkdir(join(include, "linux"), { recursive: true });
      await copyFile(join(tree, "include/uapi/linux/liveupdate.h"), join(include, "linux/liveupdate.h"));
      return { root, include };
    }

    /** What building the (doctored) fake tree for x86_64 throws. */
    async function buildError(root: string, uapiInclude: string): Promise<HarnessError> {
      const err = await buildLiveupdateSelftestsFrom({ arch: "x86_64", sourceTree: root, uapiInclude }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(HarnessError);
      return err as HarnessError;
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

    it(
      "builds the tree's own helper-library layout (x86_64, host libc headers)",
      { timeout: 60_000 },
      async () => {
        const { root, include } = await fakeTree();
        const built = await buildLiveupdateSelftestsFrom({
          arch: "x86_64",
          sourceTree: root,
          uapiInclude: include,
          outDir: join(root, "out"),
        });
        const manifest = JSON.parse(await readFile(join(built.dir, "build.json"), "utf8")) as {
          library: { layout: string; sources: string[] };
        };
        // 7.2 links luo_test_utils.c (LIB_C); 7.3 links lib/lu_utils.c (lib/libliveupdate.mk).
        expect(manifest.library).toEqual(
          (await access(join(root, SELFTEST_DIR, "lib/libliveupdate.mk")).then(
            () => true,
            () => false,
          ))
            ? { layout: "libliveupdate.mk", sources: ["lib/lu_utils.c"] }
            : { layout: "LIB_C", sources: ["luo_test_utils.c"] },
        );
        for (const spec of LIVEUPDATE_SELFTESTS) await access(built.binaries[spec.name]);
      },
    );

    it("refuses a lib/libliveupdate.mk it does not know", async () => {
      const { root, include } = await fakeTree();
      const makefile = join(root, SELFTEST_DIR, "Makefile");
      const text = await readFile(makefile, "utf8");
      await writeFile(makefile, text.replace(/^LIB_C\s*\+=.*$/m, "") + "\ninclude lib/libliveupdate.mk\n");
      await mkdir(join(root, SELFTEST_DIR, "lib"), { recursive: true });
      await writeFile(
        join(root, SELFTEST_DIR, "lib/libliveupdate.mk"),
        "LIBLIVEUPDATE_C := lu_utils.c lu_new.c\n",
      );
      expect((await buildError(root, include)).evidence.join("\n")).toContain("lu_new.c");
    });

    it("refuses a Makefile that builds programs the harness does not describe", async () => {
      const { root, include } = await fakeTree();
      await appendFile(join(root, SELFTEST_DIR, "Makefile"), "\nTEST_GEN_PROGS_EXTENDED += luo_new_test\n");
      expect((await buildError(root, include)).evidence.join("\n")).toContain("luo_new_test");
    });

    it("refuses headers without linux/liveupdate.h", async () => {
      const { root } = await fakeTree();
      const empty = join(root, "empty-include");
      await mkdir(empty);
      await writeFile(join(empty, "README"), "no headers\n");
      expect((await buildError(root, empty)).message).toMatch(/no linux\/liveupdate\.h/);
    });
  },
);
