// Patched kernel sources (kho kernel build --patch/--variant): a hard-linked copy of the tree with
// the patches applied, the original left as it was, made once, named in the identity; a patch
// that does not apply is one sentence with patch's own lines. Real `patch` and `cp` on a small
// tree, and the real max-order-9 patch on the cached kernel source when there is one.
import { access, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HarnessError } from "../../src/errors.js";
import { patchedSource, type KernelSource } from "../../src/kernel/source.js";
import { KERNEL_VARIANTS, variantFiles } from "../../src/kernel/variants.js";
import { cachePaths } from "../../src/paths.js";

const log = () => undefined;
const saved = process.env.KHO_CACHE_DIR;
let dir: string;
let source: KernelSource;

const PATCH = `--- a/mm/Kconfig
+++ b/mm/Kconfig
@@ -1,3 +1,3 @@
 config A
-\tint
+\tint "A with a prompt"
 \tdefault 10
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kho-patch-"));
  process.env.KHO_CACHE_DIR = join(dir, "cache");
  const tree = join(cachePaths.sources(), "linux-source-9.9_9.9-1");
  await mkdir(join(tree, "mm"), { recursive: true });
  await writeFile(join(tree, "Makefile"), "VERSION = 9\n");
  await writeFile(join(tree, "mm/Kconfig"), "config A\n\tint\n\tdefault 10\n");
  await writeFile(join(dir, "prompt.patch"), PATCH);
  source = {
    kind: "debian",
    tree,
    identity: "linux-source-9.9 9.9-1",
    series: "9.9",
    packageVersion: "9.9-1",
  };
});

afterAll(async () => {
  if (saved === undefined) delete process.env.KHO_CACHE_DIR;
  else process.env.KHO_CACHE_DIR = saved;
  await rm(dir, { recursive: true, force: true });
});

describe("patchedSource", () => {
  it("applies the patches to a hard-linked copy, leaves the original as it was, and names them", async () => {
    const patched = await patchedSource(source, [join(dir, "prompt.patch")], log);
    expect(patched.tree).not.toBe(source.tree);
    expect(patched.identity).toMatch(/^linux-source-9\.9 9\.9-1 \+ prompt\.patch \([0-9a-f]{12}\)$/);
    expect(await readFile(join(patched.tree, "mm/Kconfig"), "utf8")).toContain('int "A with a prompt"');
    expect(await readFile(join(source.tree, "mm/Kconfig"), "utf8")).toBe("config A\n\tint\n\tdefault 10\n");
    // untouched files stay links to the original's: the copy costs no space
    const [a, b] = await Promise.all([
      stat(join(source.tree, "Makefile")),
      stat(join(patched.tree, "Makefile")),
    ]);
    expect(b.ino).toBe(a.ino);
    // made once: a second call finds it (and no partial copy is left behind)
    const again = await patchedSource(source, [join(dir, "prompt.patch")], log);
    expect(again).toEqual(patched);
    expect((await readdir(cachePaths.sources())).filter((n) => n.endsWith(".partial"))).toEqual([]);
    // no patches: the source itself
    expect(await patchedSource(source, [], log)).toBe(source);
  });

  it("refuses a patch that does not apply in one sentence, with patch's lines, and keeps nothing", async () => {
    const bad = join(dir, "bad.patch");
    await writeFile(bad, PATCH.replace("config A", "config B"));
    const err = await patchedSource(source, [bad], log).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HarnessError);
    expect((err as HarnessError).message).toBe(
      `the kernel patch ${bad} does not apply to linux-source-9.9 9.9-1`,
    );
    expect((err as HarnessError).evidence.join("\n")).toMatch(/FAILED|hunk/i);
    expect((await readdir(cachePaths.sources())).filter((n) => n.includes("partial"))).toEqual([]);
    const missing = await patchedSource(source, [join(dir, "nope.patch")], log).catch((e: unknown) => e);
    expect((missing as HarnessError).message).toBe(
      `the kernel patch ${join(dir, "nope.patch")} cannot be read`,
    );
  });
});

// The real variant patch against the real 7.2 source, when the cache has it.
const real = join(
  process.env.KHO_CACHE_DIR ?? join(process.env.HOME ?? "/root", ".cache/kho-harness"),
  "src/linux-source-7.2_7.2.13-1",
);
const haveReal = await access(join(real, "Makefile")).then(
  () => true,
  () => false,
);
if (!haveReal)
  console.log("kernel-patch: skipping the max-order-9 patch check: no linux-source-7.2 tree in the cache");

describe.skipIf(!haveReal)("the max-order-9 variant's patch", () => {
  it("applies to linux-source-7.2 and gives both arches a settable ARCH_FORCE_MAX_ORDER", async () => {
    const { patches } = variantFiles(KERNEL_VARIANTS["max-order-9"]);
    const src: KernelSource = { kind: "tree", tree: real, identity: "linux-source-7.2 7.2.13-1" };
    const patched = await patchedSource(src, patches, log);
    const arm64 = await readFile(join(patched.tree, "arch/arm64/Kconfig"), "utf8");
    const x86 = await readFile(join(patched.tree, "arch/x86/Kconfig"), "utf8");
    expect(arm64).toMatch(/config ARCH_FORCE_MAX_ORDER\n\tint "/);
    expect(x86).toMatch(/config ARCH_FORCE_MAX_ORDER\n\tint "[^"]*"\n\trange 9 10\n\tdefault "10"/);
  });
});
