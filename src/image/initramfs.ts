// The guest's base initramfs for one arch and kernel: busybox, dropbear and its libraries from
// Debian, the guest agent built against the kernel's headers, and /init. Per-run secrets (SSH
// keys) are not in it: they travel in a small second archive appended at boot (see overlay.ts),
// so the base image is cached by content and shared by every run.
import { mkdir, readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { archSpec, type ArchName } from "../arch.js";
import { buildAgent } from "../guest/agent-build.js";
import type { CachedKernel } from "../kernel/cache.js";
import { cacheRoot, imagesDir } from "../paths.js";
import { cacheKey, sha256 } from "../util/hash.js";
import type { Logger } from "../util/log.js";
import { busyboxApplets } from "./busybox.js";
import { CpioWriter } from "./cpio.js";
import { extractUserspace, fetchGuestDebs } from "./userspace.js";
import { writeFileAtomic } from "../util/build-slot.js";

/** Bump when the layout below changes in a way the inputs' hashes do not capture. */
// 2: libraries cut to the DT_NEEDED closure; 3: /init is the agent; 4: busybox applet links
const LAYOUT_VERSION = "4";

export interface GuestImage {
  readonly arch: ArchName;
  readonly path: string;
  readonly size: number;
  readonly key: string;
  readonly cached: boolean;
}

/** Extra files a caller wants in the image (a test module, selftest binaries). */
export interface ExtraFile {
  readonly path: string;
  readonly data: Uint8Array;
  readonly mode: number;
}

/**
 * `kernel` gives the uapi headers the agent compiles against; without one (a prebuilt
 * --kernel), the agent uses its own copy of the LUO uapi definitions.
 */
export async function buildGuestImage(
  arch: ArchName,
  kernel: CachedKernel | undefined,
  log: Logger,
  extras: readonly ExtraFile[] = [],
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
    debs: debs.map((d) => basename(d)).join(","),
    agent: sha256(agent),
    fstab: sha256(fstab),
    extras: extras.map((e) => `${e.path}:${e.mode}:${sha256(e.data)}`).join(","),
  });
  const dir = join(cacheRoot(), "images");
  const path = join(dir, `initramfs-${arch}-${key}.cpio`);
  const existing = await stat(path).catch(() => undefined);
  if (existing) return { arch, path, size: existing.size, key, cached: true };
  const userspace = await extractUserspace(spec, debs);

  const cpio = new CpioWriter();
  for (const d of [
    "dev",
    "proc",
    "sys",
    "tmp",
    "run",
    "root",
    "boot",
    "etc",
    "usr/bin",
    "usr/sbin",
    "usr/lib",
    "usr/lib64",
  ]) {
    cpio.dir(d, d === "tmp" ? 0o1777 : d === "root" ? 0o700 : 0o755);
  }
  for (const l of ["bin", "sbin", "lib", "lib64"]) cpio.symlink(l, `usr/${l}`);
  cpio.device("dev/console", "c", 5, 1, 0o600).device("dev/null", "c", 1, 3, 0o666);
  for (const f of userspace.files) {
    if (f.kind === "symlink" && f.target) cpio.symlink(f.path, f.target);
    else if (f.data) cpio.file(f.path, f.data, f.mode);
  }
  // busybox's applet links, in both bin directories (/sbin/modprobe is where the kernel looks):
  // what `busybox --install -s` would make at every boot. Left to the init when the applet
  // table cannot be read.
  const busybox = userspace.files.find((f) => f.path === "usr/bin/busybox")?.data;
  const taken = new Set(userspace.files.map((f) => f.path));
  for (const applet of (busybox && busyboxApplets(busybox)) ?? []) {
    for (const dir of ["usr/bin", "usr/sbin"]) {
      const link = `${dir}/${applet}`;
      if (!taken.has(link)) cpio.symlink(link, dir === "usr/bin" ? "busybox" : "../bin/busybox");
    }
  }
  // The agent is also the init (guest/agent/init.c): run as /init, it sets the guest up.
  cpio.symlink("init", "usr/bin/kho-agent");
  cpio.file("etc/fstab", fstab, 0o644);
  cpio.file("usr/bin/kho-agent", agent, 0o755);
  cpio.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  cpio.file("etc/group", "root:x:0:\n");
  cpio.file("etc/shells", "/bin/sh\n");
  for (const e of extras) cpio.file(e.path, e.data, e.mode);
  // Uncompressed: the kernel unpacks it with no decompressor, which is faster under TCG than
  // gunzip of a few MiB, and the file never leaves this machine.
  const bytes = cpio.finish();
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(path, bytes);
  log(`# ${arch}: guest image ${path} (${(bytes.length / 1048576).toFixed(1)} MiB)`);
  return { arch, path, size: bytes.length, key, cached: false };
}
