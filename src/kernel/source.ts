// Where kernel source comes from: Debian's linux-source-<series> package (fetched with the
// private apt configuration and unpacked once into the cache), or the user's own tree.
import { access, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { execa } from "execa";
import { DEBIAN_UNSTABLE, PrivateApt } from "../debian/apt.js";
import { HarnessError } from "../errors.js";
import { requireTools } from "../host/tools.js";
import { requireFreeSpace } from "../host/disk-space.js";
import { cachePaths } from "../paths.js";
import { sha256 } from "../util/hash.js";
import { buildOnce } from "../util/entry-lock.js";
import type { Logger } from "../util/log.js";

export const DEFAULT_SERIES = "7.2";
/** The first series with both KHO (radix tree) and LUO in tree. */
const FIRST_SERIES_WITH_LUO = [7, 2] as const;

export type KernelSource =
  | {
      readonly kind: "debian";
      readonly tree: string;
      /** e.g. "linux-source-7.2 7.2.13-1": what the cache key and reports name. */
      readonly identity: string;
      readonly series: string;
      readonly packageVersion: string;
    }
  | {
      readonly kind: "tree";
      readonly tree: string;
      /** git HEAD plus a hash of the uncommitted diff, or a hash of the file listing. */
      readonly identity: string;
    };

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

function parseSeries(series: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)$/.exec(series);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

function hasLuo(series: string): boolean {
  const v = parseSeries(series);
  if (!v) return false;
  return (
    v[0] > FIRST_SERIES_WITH_LUO[0] || (v[0] === FIRST_SERIES_WITH_LUO[0] && v[1] >= FIRST_SERIES_WITH_LUO[1])
  );
}

/**
 * Debian's kernel source for `series`. When the default series has left the archive, takes
 * the newest series that still has KHO and LUO, and says so.
 */
export async function debianKernelSource(
  requestedSeries: string | undefined,
  log: Logger,
): Promise<KernelSource & { kind: "debian" }> {
  const apt = new PrivateApt(DEBIAN_UNSTABLE, log);
  let series = requestedSeries ?? DEFAULT_SERIES;
  let version = await apt.candidate(`linux-source-${series}`);
  if (!version) {
    const available = (await apt.searchNames("^linux-source-[0-9]+\\.[0-9]+$"))
      .map((n) => n.replace("linux-source-", ""))
      .filter(hasLuo)
      .sort((a, b) => compareSeries(b, a));
    if (requestedSeries !== undefined || available.length === 0) {
      throw new HarnessError(
        `Debian has no linux-source-${series} package` +
          (available.length ? ` (series with KHO and LUO available: ${available.join(", ")})` : ""),
      );
    }
    const newest = available[0] as string;
    log(
      `# linux-source-${series} has left Debian's archive; using the newest series with KHO and LUO: ${newest}`,
    );
    series = newest;
    version = await apt.candidate(`linux-source-${series}`);
    if (!version)
      throw new HarnessError(`Debian lists linux-source-${series} but has no candidate version for it`);
  }
  const tree = join(cachePaths.sources(), `linux-source-${series}_${version}`);
  const unpacked = async () => ((await exists(join(tree, ".kho-unpacked"))) ? true : undefined);
  await buildOnce(`${tree}.lock`, `unpacking linux-source-${series}`, { log }, unpacked, async () => {
    // the .deb is about 150 MiB, the unpacked tree 1.5 GiB
    await requireFreeSpace(
      [{ path: cachePaths.sources(), mib: 2048, what: "the kernel source" }],
      `unpacking linux-source-${series}`,
    );
    const [deb] = await apt.download([`linux-source-${series}`], join(apt.dir, "debs"));
    await unpackDebianSource(deb as string, series, tree, log);
    return true;
  });
  return {
    kind: "debian",
    tree,
    identity: `linux-source-${series} ${version}`,
    series,
    packageVersion: version,
  };
}

function compareSeries(a: string, b: string): number {
  const [x0, x1] = parseSeries(a) ?? [0, 0];
  const [y0, y1] = parseSeries(b) ?? [0, 0];
  return x0 - y0 || x1 - y1;
}

/** The .deb holds usr/src/linux-source-X.tar.xz; unpack it next to the final place, then rename. */
async function unpackDebianSource(deb: string, series: string, tree: string, log: Logger): Promise<void> {
  const partial = `${tree}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  log(`# unpacking ${deb.split("/").pop()} (about 20 s)`);
  const tarball = `./usr/src/linux-source-${series}.tar.xz`;
  const r = await execa(
    "sh",
    [
      "-c",
      `dpkg-deb --fsys-tarfile "$1" | tar -xO "$2" | tar -xJ --strip-components=1 -C "$3"`,
      "sh",
      deb,
      tarball,
      partial,
    ],
    { reject: false, all: true },
  );
  if (r.exitCode !== 0 || !(await exists(join(partial, "Makefile")))) {
    await rm(partial, { recursive: true, force: true });
    throw new HarnessError(
      `could not unpack the kernel source from ${deb}`,
      (r.all ?? "").split("\n").slice(-10),
    );
  }
  await writeFile(join(partial, ".kho-unpacked"), new Date().toISOString());
  await rm(tree, { recursive: true, force: true });
  await rename(partial, tree);
}

/** The user's own tree, for `--src DIR`. It is only read: the build goes to a directory of ours. */
export async function userKernelSource(dir: string): Promise<KernelSource & { kind: "tree" }> {
  const tree = resolve(dir);
  const makefile = await readFile(join(tree, "Makefile"), "utf8").catch(() => "");
  if (!/^VERSION = \d+/m.test(makefile) || !(await exists(join(tree, "Kconfig")))) {
    throw new HarnessError(
      `${dir} is not a Linux kernel source tree (no top-level Makefile with VERSION and Kconfig)`,
    );
  }
  // Kbuild refuses O= builds from a tree that was configured in place.
  for (const leftover of [".config", "include/config"]) {
    if (await exists(join(tree, leftover))) {
      throw new HarnessError(
        `${dir} has been built in place (it has ${leftover}); the harness builds out of tree (O=) and Kbuild needs a clean source: run 'make mrproper' in it first`,
      );
    }
  }
  return { kind: "tree", tree, identity: await treeIdentity(tree) };
}

async function treeIdentity(tree: string): Promise<string> {
  const git = (args: string[]) =>
    execa("git", ["-C", tree, ...args], { reject: false, stripFinalNewline: true });
  const head = await git(["rev-parse", "HEAD"]);
  if (head.exitCode === 0) {
    const diff = await git(["diff", "HEAD", "--binary"]);
    const untracked = await git(["ls-files", "--others", "--exclude-standard", "-z"]);
    const extra = await Promise.all(
      untracked.stdout
        .split("\0")
        .filter(Boolean)
        .map(async (f) => `${f}:${(await stat(join(tree, f)).catch(() => undefined))?.mtimeMs ?? 0}`),
    );
    const dirty =
      diff.stdout || extra.length ? `+dirty-${sha256(diff.stdout + extra.join("\n")).slice(0, 12)}` : "";
    return `git ${head.stdout}${dirty}`;
  }
  // No git: every file's path, size and mtime (about a second for a kernel tree).
  const r = await execa("find", [tree, "-type", "f", "-not", "-path", "*/.git/*", "-printf", "%P %s %T@\\n"]);
  return `files ${sha256(r.stdout).slice(0, 16)}`;
}

/**
 * `source` with `patches` applied (`patch -p1`, in order), for a kernel the harness needs in a
 * shape upstream Kconfig does not offer (images/patches/), exactly (no fuzz). The patched tree is a hard-linked
 * copy of the source next to it (GNU patch writes a changed file anew, so the links of the
 * original stay untouched), made once per set of patches; its identity names the patches.
 */
export async function patchedSource<S extends KernelSource>(
  source: S,
  patches: readonly string[],
  log: Logger,
): Promise<S> {
  if (patches.length === 0) return source;
  const texts = await Promise.all(
    patches.map((p) =>
      readFile(p, "utf8").catch(() => {
        throw new HarnessError(`the kernel patch ${p} cannot be read`);
      }),
    ),
  );
  const id = sha256(texts.join("\0")).slice(0, 12);
  const tree = join(cachePaths.sources(), `${basename(source.tree)}+patches-${id}`);
  const done = async () => ((await exists(join(tree, ".kho-patched"))) ? true : undefined);
  await buildOnce(`${tree}.lock`, `patching ${basename(source.tree)}`, { log }, done, async () => {
    await requireTools(["patch"], "patching the kernel source");
    const partial = `${tree}.partial`;
    await rm(partial, { recursive: true, force: true });
    log(`# ${basename(source.tree)}: applying ${patches.map((p) => basename(p)).join(", ")}`);
    await execa("cp", ["-al", source.tree, partial]);
    for (const [i, p] of patches.entries()) {
      const r = await execa(
        "patch",
        ["-p1", "--forward", "--fuzz=0", "--no-backup-if-mismatch", "-d", partial],
        {
          input: texts[i],
          reject: false,
          all: true,
        },
      );
      if (r.exitCode !== 0) {
        await rm(partial, { recursive: true, force: true });
        throw new HarnessError(
          `the kernel patch ${p} does not apply to ${source.identity}`,
          (r.all ?? "").split("\n").slice(-12),
        );
      }
    }
    await writeFile(join(partial, ".kho-patched"), patches.map((p) => basename(p)).join("\n") + "\n");
    await rename(partial, tree);
    return true;
  });
  const names = patches.map((p) => basename(p)).join("+");
  return { ...source, tree, identity: `${source.identity} + ${names} (${id})` };
}
