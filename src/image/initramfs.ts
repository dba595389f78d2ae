// The guest's base initramfs for one arch and kernel: busybox, dropbear and its libraries from
// Debian, the guest agent built against the kernel's headers, and /init. Per-run secrets (SSH
// keys) are not in it: they travel in a small second archive appended at boot (see overlay.ts),
// so the base image is cached by content and shared by every run.
import { chmod, mkdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { archSpec, type ArchName, type ArchSpec } from "../arch.js";
import { buildAgent } from "./agent-build.js";
import type { CachedKernel } from "../kernel/cache.js";
import { cacheRoot, imagesDir } from "../paths.js";
import { cacheKey, sha256 } from "../util/hash.js";
import type { Logger } from "../util/log.js";
import { busyboxApplets } from "./busybox.js";
import { CpioWriter } from "./cpio.js";
import { extractUserspace, fetchGuestDebs } from "./userspace.js";
import { writeFileAtomic } from "../util/build-slot.js";
import { buildOnce } from "../util/entry-lock.js";

/** Bump when the layout below changes in a way the inputs' hashes do not capture. */
// 2: libraries cut to the DT_NEEDED closure; 3: /init is the agent; 4: busybox applet links;
// 5: userspace may live on the next-kernel disk
const LAYOUT_VERSION = "5";

/**
 * Where busybox, dropbear and their libraries go. "initrd": in the image, as everything else.
 * "disk": on the next-kernel disk the init mounts at /boot, the image's /usr a link to
 * /boot/usr; the image keeps only /init (the agent) and /etc. Every boot unpacks the initrd and
 * every kexec load reads and hashes it (x86_64's purgatory hashes it once more), under TCG:
 * 7.5 MiB of it cost about 0.3 s of every kexec, where the disk is read only as programs run.
 */
export type UserspacePlacement = "initrd" | "disk";

export interface GuestImage {
  readonly arch: ArchName;
  readonly path: string;
  readonly size: number;
  readonly key: string;
  readonly cached: boolean;
  /** With placement "disk": the cached tree (usr/...) the next-kernel disk carries. */
  readonly userspace?: { readonly dir: string; readonly key: string };
}

/** One entry of the guest's file tree, as the cpio and the disk both take it. */
export type TreeEntry =
  | { readonly kind: "dir"; readonly path: string; readonly mode: number }
  | {
      readonly kind: "file";
      readonly path: string;
      readonly data: Uint8Array | string;
      readonly mode: number;
    }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string }
  | {
      readonly kind: "char-device";
      readonly path: string;
      readonly major: number;
      readonly minor: number;
      readonly mode: number;
    };

/**
 * `kernel` gives the uapi headers the agent compiles against; without one (a prebuilt
 * --kernel), the agent uses its own copy of the LUO uapi definitions.
 */
export async function buildGuestImage(
  arch: ArchName,
  kernel: CachedKernel | undefined,
  log: Logger,
  placement: UserspacePlacement = "initrd",
): Promise<GuestImage> {
  const spec = archSpec(arch);
  const debs = await fetchGuestDebs(spec, log);
  const noHeaders = join(cacheRoot(), "no-uapi-headers");
  if (!kernel) await mkdir(noHeaders, { recursive: true });
  const agentPath = await buildAgent(arch, {
    uapiInclude: kernel ? join(kernel.dir, kernel.manifest.headersDir, "include") : noHeaders,
    outDir: join(cacheRoot(), "agent"),
  });
  const [fstab, agent] = await Promise.all([readFile(imagesDir("initramfs", "fstab")), readFile(agentPath)]);
  const key = cacheKey({
    layout: LAYOUT_VERSION,
    arch,
    placement,
    debs: debs.map((d) => basename(d)).join(","),
    agent: sha256(agent),
    fstab: sha256(fstab),
  });
  const dir = join(cacheRoot(), "images");
  const path = join(dir, `initramfs-${arch}-${key}.cpio`);
  const treeDir = join(dir, `userspace-${arch}-${key}`);
  // The disk carries usr/ only when splitTree moved it there (it keeps everything in the image
  // when busybox's applet table could not be read): an empty tree directory records that.
  const diskUsr = async () =>
    placement === "disk" && (await stat(join(treeDir, "usr")).catch(() => undefined)) !== undefined
      ? { userspace: { dir: treeDir, key } }
      : {};
  const lookup = async (): Promise<GuestImage | undefined> => {
    const existing = await stat(path).catch(() => undefined);
    const treeThere = placement === "initrd" || (await stat(treeDir).catch(() => undefined)) !== undefined;
    return existing && treeThere
      ? { arch, path, size: existing.size, key, cached: true, ...(await diskUsr()) }
      : undefined;
  };
  return buildOnce(`${path}.lock`, `building the ${arch} guest image`, { log }, lookup, async () => {
    const { image, disk } = splitTree(await guestTree(spec, debs, agent, fstab), placement);
    const cpio = new CpioWriter();
    for (const e of image) {
      if (e.kind === "dir") cpio.dir(e.path, e.mode);
      else if (e.kind === "symlink") cpio.symlink(e.path, e.target);
      else if (e.kind === "char-device") cpio.device(e.path, "c", e.major, e.minor, e.mode);
      else cpio.file(e.path, e.data, e.mode);
    }
    // Uncompressed: the kernel unpacks it with no decompressor, which is faster under TCG than
    // gunzip of a few MiB, and the file never leaves this machine.
    const bytes = cpio.finish();
    await mkdir(dir, { recursive: true });
    if (placement === "disk") await writeTreeAtomic(treeDir, disk);
    await writeFileAtomic(path, bytes);
    log(
      `# ${arch}: guest image ${path} (${(bytes.length / 1048576).toFixed(1)} MiB${disk.length ? ", userspace on the next-kernel disk" : ""})`,
    );
    return { arch, path, size: bytes.length, key, cached: false, ...(await diskUsr()) };
  });
}

/** The whole guest tree: directories, busybox, dropbear and libraries, applet links, the agent, /etc. */
async function guestTree(
  spec: ArchSpec,
  debs: readonly string[],
  agent: Uint8Array,
  fstab: Uint8Array,
): Promise<TreeEntry[]> {
  const userspace = await extractUserspace(spec, debs);
  const tree: TreeEntry[] = [];
  for (const d of ["dev", "proc", "sys", "tmp", "run", "root", "boot", "etc", ...USR_DIRS]) {
    tree.push({ kind: "dir", path: d, mode: d === "tmp" ? 0o1777 : d === "root" ? 0o700 : 0o755 });
  }
  tree.push({ kind: "char-device", path: "dev/console", major: 5, minor: 1, mode: 0o600 });
  tree.push({ kind: "char-device", path: "dev/null", major: 1, minor: 3, mode: 0o666 });
  for (const l of ["bin", "sbin", "lib", "lib64"])
    tree.push({ kind: "symlink", path: l, target: `usr/${l}` });
  for (const f of userspace.files) {
    if (f.kind === "symlink" && f.target) tree.push({ kind: "symlink", path: f.path, target: f.target });
    else if (f.data) tree.push({ kind: "file", path: f.path, data: f.data, mode: f.mode });
  }
  // busybox's applet links, in both bin directories (/sbin/modprobe is where the kernel looks):
  // what `busybox --install -s` would make at every boot. Left to the init when the applet
  // table cannot be read.
  const busybox = userspace.files.find((f) => f.path === "usr/bin/busybox")?.data;
  const taken = new Set(userspace.files.map((f) => f.path));
  for (const applet of (busybox && busyboxApplets(busybox)) ?? []) {
    for (const dir of ["usr/bin", "usr/sbin"]) {
      const link = `${dir}/${applet}`;
      if (!taken.has(link))
        tree.push({ kind: "symlink", path: link, target: dir === "usr/bin" ? "busybox" : "../bin/busybox" });
    }
  }
  // The agent is also the init (guest/agent/init.c): run as /init, it sets the guest up.
  tree.push({ kind: "file", path: "usr/bin/kho-agent", data: agent, mode: 0o755 });
  tree.push({ kind: "symlink", path: "init", target: "usr/bin/kho-agent" });
  tree.push({ kind: "file", path: "etc/fstab", data: fstab, mode: 0o644 });
  tree.push({ kind: "file", path: "etc/passwd", data: "root:x:0:0:root:/root:/bin/sh\n", mode: 0o644 });
  tree.push({ kind: "file", path: "etc/group", data: "root:x:0:\n", mode: 0o644 });
  tree.push({ kind: "file", path: "etc/shells", data: "/bin/sh\n", mode: 0o644 });
  return tree;
}

const USR_DIRS = ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"] as const;

/**
 * "initrd": everything in the image. "disk": usr/ goes to the disk (the image's usr becomes a
 * link to boot/usr, where the init mounts it) and the agent, which is the init and must run
 * before any mount, stays in the image as /init, linked from the disk's usr/bin/kho-agent.
 * Without applet links (busybox's table unreadable) the init would have to make them on the
 * read-only disk, so that image keeps everything.
 */
export function splitTree(
  tree: readonly TreeEntry[],
  placement: UserspacePlacement,
): { image: TreeEntry[]; disk: TreeEntry[] } {
  const hasLinks = tree.some((e) => e.path === "usr/bin/sh");
  if (placement === "initrd" || !hasLinks) return { image: [...tree], disk: [] };
  const onDisk = (e: TreeEntry) => e.path === "usr" || e.path.startsWith("usr/");
  const image: TreeEntry[] = [];
  const disk: TreeEntry[] = [{ kind: "dir", path: "usr", mode: 0o755 }];
  for (const e of tree) {
    if (e.path === "init") continue;
    if (e.path === "usr/bin/kho-agent" && e.kind === "file") {
      image.push({ ...e, path: "init" });
      disk.push({ kind: "symlink", path: e.path, target: "/init" });
    } else (onDisk(e) ? disk : image).push(e);
  }
  image.push({ kind: "symlink", path: "usr", target: "boot/usr" });
  return { image, disk };
}

/** Writes the disk's part of the tree under `root` (renamed into place whole; empty when the
 *  disk carries nothing). */
async function writeTreeAtomic(root: string, entries: readonly TreeEntry[]): Promise<void> {
  const temp = `${root}.${process.pid}.tmp`;
  await rm(temp, { recursive: true, force: true });
  await mkdir(temp, { recursive: true });
  try {
    for (const e of entries) {
      const at = join(temp, e.path);
      await mkdir(dirname(at), { recursive: true });
      if (e.kind === "dir") await mkdir(at, { recursive: true, mode: e.mode });
      else if (e.kind === "symlink") await symlink(e.target, at);
      else if (e.kind === "char-device") throw new Error(`no device nodes on the disk (${e.path})`);
      else {
        await writeFile(at, e.data);
        await chmod(at, e.mode);
      }
    }
    await rm(root, { recursive: true, force: true });
    await rename(temp, root);
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}
