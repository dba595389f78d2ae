// Per-run pieces of the guest's boot: a small cpio with this run's SSH keys, appended to the
// cached base image (the kernel unpacks concatenated archives in order), and a disk that
// carries the next kernel to kexec into, cached by the kernel's hash. The next kernel's initrd
// is the booted one: the guest boots with retain_initrd and loads /sys/firmware/initrd.
import { createReadStream, createWriteStream } from "node:fs";
import {
  access,
  appendFile,
  copyFile,
  cp,
  link,
  mkdir,
  mkdtemp,
  readdir,
  rename,
  rm,
  stat,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { execa } from "execa";
import tar from "tar-stream";
import { HarnessError } from "../errors.js";
import { requireTools } from "../host/tools.js";
import { cacheRoot } from "../paths.js";
import { fileSha256 } from "../util/hash.js";
import { dropbearHostKey, type SshKeys } from "../vm/keys.js";
import { CpioWriter } from "./cpio.js";
import { writeRomfs } from "./romfs.js";
import type { UserspacePlacement } from "./initramfs.js";
import { buildOnce } from "../util/entry-lock.js";
import { stderrLogger } from "../util/log.js";

export function keysOverlay(keys: SshKeys): Uint8Array {
  return new CpioWriter()
    .dir("root", 0o700)
    .dir("root/.ssh", 0o700)
    .file("root/.ssh/authorized_keys", keys.client.public + "\n", 0o600)
    .dir("etc/dropbear", 0o700)
    .file("etc/dropbear/dropbear_ed25519_host_key", dropbearHostKey(keys.host.private), 0o600)
    .finish();
}

/** base image + overlay, written to `dest` (a kernel-side copy, then the append). */
export async function writeBootInitrd(baseImage: string, overlay: Uint8Array, dest: string): Promise<void> {
  await copyFile(baseImage, dest);
  await appendFile(dest, overlay);
}

/**
 * How the next kernel reaches the guest: a romfs or ext4 disk the guest's init mounts
 * read-only at /boot (no copy; the kernel reads the files only when a kexec loads them), or,
 * for a kernel with neither built in, a tar the init unpacks into /boot at every boot
 * (~0.2-0.4 s under TCG). The harness's own kernels have romfs (two objects to compile, where
 * ext4 and its journal are forty); a defconfig or distribution kernel has ext4.
 */
export type NextDiskFormat = "romfs" | "ext4" | "tar";

/** romfs, else ext4, when the booted kernel can mount it without modules; its config decides. */
export function nextDiskFormat(config: ReadonlyMap<string, string>): NextDiskFormat {
  if (config.get("ROMFS_FS") === "y" && config.get("ROMFS_BACKED_BY_BLOCK") === "y") return "romfs";
  return config.get("EXT4_FS") === "y" ? "ext4" : "tar";
}

/**
 * Userspace goes on the disk when every kernel that boots from it (the booted one and, with
 * --next-kernel, the next) mounts the disk without modules: virtio-blk and the disk's
 * filesystem built in. Otherwise it stays in the initrd, where a kernel needs nothing to reach it.
 */
export function userspacePlacement(
  format: NextDiskFormat,
  configs: readonly (ReadonlyMap<string, string> | undefined)[],
): UserspacePlacement {
  if (format === "tar") return "initrd";
  const mounts = (c: ReadonlyMap<string, string> | undefined) =>
    c !== undefined && c.get("VIRTIO_BLK") === "y" && nextDiskFormat(c) === format;
  return configs.every(mounts) ? "disk" : "initrd";
}

/** Bumped when the disk's contents change shape, so older cached disks are not reused. */
const NEXT_DISK_LAYOUT = 4;

/** The guest's usr/ tree when the disk also carries userspace (GuestImage.userspace). */
export interface DiskUserspace {
  readonly dir: string;
  readonly key: string;
}

/**
 * The disk (virtio, serial kho-next) that holds next-kernel, and the guest's usr/ when given,
 * from the cache: it depends only on the kernel's bytes and the image's key, so one disk serves
 * every run (mke2fs took ~0.1 s of each run's setup). Written under a temp name and renamed, so
 * a crash leaves no half disk under the final name.
 */
export async function cachedNextKernelDisk(
  kernel: string,
  format: NextDiskFormat,
  userspace?: DiskUserspace,
): Promise<string> {
  if (userspace && format === "tar")
    throw new HarnessError("userspace goes only on a mountable next-kernel disk");
  const dir = join(cacheRoot(), "next-disks");
  const name = [(await fileSha256(kernel)).slice(0, 16), userspace?.key.slice(0, 16), `v${NEXT_DISK_LAYOUT}`];
  const dest = join(dir, `${name.filter(Boolean).join("-")}.${format}`);
  const present = () =>
    access(dest).then(
      () => dest,
      () => undefined,
    );
  return buildOnce(
    `${dest}.lock`,
    "writing the next-kernel disk",
    { log: stderrLogger },
    present,
    async () => {
      await mkdir(dir, { recursive: true });
      const temp = `${dest}.${process.pid}.tmp`;
      try {
        await writeNextKernelDisk(kernel, temp, format, userspace);
        await rename(temp, dest);
      } finally {
        await rm(temp, { force: true });
      }
      return dest;
    },
  );
}

export async function writeNextKernelDisk(
  kernel: string,
  dest: string,
  format: NextDiskFormat,
  userspace?: DiskUserspace,
): Promise<void> {
  if (format === "tar") await writeTarDisk(kernel, dest);
  else await writeImageDisk(kernel, dest, format, userspace);
}

/** The file's name on the disk: the guest sees it as /boot/next-kernel. */
const NEXT_KERNEL_NAME = "next-kernel";

/** The disk's volume label (its virtio serial, which the init looks for, is the same). */
const DISK_LABEL = "kho-next";

/**
 * 4 KiB blocks, no reserved blocks; no journal (the guest mounts it read-only) and no metadata
 * checksums (half of mke2fs's time).
 */
const MKE2FS_OPTIONS: readonly string[] = [
  ...["-q", "-F", "-t", "ext4", "-L", DISK_LABEL, "-b", "4096", "-m", "0"],
  ...["-O", "^has_journal,^metadata_csum"],
];

async function writeImageDisk(
  kernel: string,
  dest: string,
  format: "romfs" | "ext4",
  userspace?: DiskUserspace,
): Promise<void> {
  const staging = await mkdtemp(join(dirname(dest), "next-disk-"));
  try {
    // Both writers copy regular files and keep symlinks as symlinks: link the kernel when on
    // the same filesystem, copy otherwise.
    await link(kernel, join(staging, NEXT_KERNEL_NAME)).catch(() =>
      copyFile(kernel, join(staging, NEXT_KERNEL_NAME)),
    );
    if (userspace)
      await cp(join(userspace.dir, "usr"), join(staging, "usr"), { recursive: true, verbatimSymlinks: true });
    if (format === "romfs") await writeRomfs(staging, dest, DISK_LABEL);
    else await mke2fs(staging, dest);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function mke2fs(staging: string, dest: string): Promise<void> {
  await requireTools(["mke2fs"], "the next kernel's disk");
  const { bytes, entries } = await treeSize(staging);
  // Data plus room for ext4's own blocks (bitmaps, inode table, extent trees): 1/16 + 1 MiB
  // and a block per entry (directories, fast symlinks need none but cost little).
  const blocks = Math.ceil((bytes + bytes / 16 + 1048576) / 4096) + entries;
  const inodes = String(16 + entries);
  const r = await execa("mke2fs", [...MKE2FS_OPTIONS, "-N", inodes, "-d", staging, dest, String(blocks)], {
    reject: false,
    all: true,
  });
  if (r.exitCode !== 0)
    throw new HarnessError(
      `mke2fs could not write the next kernel's disk ${dest}`,
      (r.all ?? "").split("\n"),
    );
}

/** Bytes of the regular files under `dir` and how many entries it holds. */
async function treeSize(dir: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    entries++;
    if (e.isFile()) bytes += (await stat(join(e.parentPath, e.name))).size;
  }
  return { bytes, entries };
}

async function writeTarDisk(kernel: string, dest: string): Promise<void> {
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(dest));
  const size = (await stat(kernel)).size;
  await new Promise<void>((resolve, reject) => {
    const entry = pack.entry({ name: NEXT_KERNEL_NAME, size, mode: 0o644, mtime: new Date(0) }, (err) =>
      err ? reject(err) : resolve(),
    );
    createReadStream(kernel).on("error", reject).pipe(entry);
  });
  pack.finalize();
  await out;
}
