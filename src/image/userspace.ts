// Guest userspace from Debian's packages of the guest's arch: busybox (static) and dropbear
// with the shared libraries it needs, read out of the .debs in TypeScript. Debian is
// merged-/usr, so everything lands under usr/ and the root gets the usual symlinks.
import { join, posix } from "node:path";
import { DEBIAN_UNSTABLE, PrivateApt } from "../debian/apt.js";
import type { ArchSpec } from "../arch.js";
import { HarnessError } from "../errors.js";
import { cacheRoot } from "../paths.js";
import type { Logger } from "../util/log.js";
import { readDynamic } from "../elf/needed.js";
import { extractFiles, type DebEntry } from "../debian/deb.js";

/** Runtime closure of dropbear-bin in Debian sid (apt-cache depends, minus debconf and docs). */
export const GUEST_PACKAGES = [
  "busybox-static",
  "dropbear-bin",
  "libc6",
  "libcrypt1",
  "libtomcrypt1",
  "libtommath1",
  "libgmp10",
  "zlib1g",
  "libgcc-s1",
] as const;

export interface UserspaceFile {
  readonly path: string;
  readonly kind: "file" | "symlink";
  readonly mode: number;
  readonly data?: Uint8Array;
  readonly target?: string;
}

export interface Userspace {
  readonly files: readonly UserspaceFile[];
  /** "busybox-static_1%3a1.38.0-3+b1_arm64.deb" ...: what the image cache key includes. */
  readonly debs: readonly string[];
}

const WANTED = [
  /^(usr\/)?bin\/busybox$/,
  /^(usr\/)?sbin\/dropbear$/,
  // Shared objects and the dynamic loader, but not gconv modules or audit/debug libraries.
  /^(usr\/)?lib(64)?\/([a-z0-9_-]+-linux-gnu\/)?(ld-linux[^/]*|lib[^/]*\.so[0-9.]*)$/,
];

const PROGRAMS = ["usr/bin/busybox", "usr/sbin/dropbear"] as const;

/**
 * Libraries nothing names in DT_NEEDED but glibc opens at run time: libgcc_s for unwinding
 * (pthread_cancel, backtrace) and the NSS modules behind getpwnam (dropbear's login).
 */
const DLOPENED = /^(libgcc_s\.so\.1|libnss_(files|compat)\.so\.2)$/;

/**
 * The programs, the dynamic loader, and every library reachable from the programs through
 * DT_NEEDED (symlinks and what they point to), plus DLOPENED. The rest of libc6 (libm, libmvec,
 * libresolv...: 2.5 MB of a 10 MB image) is left out: every boot unpacks the image and every
 * kexec load hashes it, under TCG.
 */
export function neededClosure(files: ReadonlyMap<string, UserspaceFile>): Set<string> {
  const libDirs = [...new Set([...files.keys()].filter(isLibrary).map((p) => posix.dirname(p)))];
  const kept = new Set<string>();
  const visit = (path: string): void => {
    if (kept.has(path)) return;
    const file = files.get(path);
    if (!file) return;
    kept.add(path);
    if (file.kind === "symlink" && file.target) {
      const target = file.target.startsWith("/")
        ? file.target.slice(1)
        : posix.join(posix.dirname(path), file.target);
      visit(toMergedUsr(posix.normalize(target)));
      return;
    }
    if (!file.data) return;
    for (const name of readDynamic(file.data).needed) {
      const found = libDirs.map((d) => `${d}/${name}`).find((p) => files.has(p));
      if (found) visit(found);
    }
  };
  for (const p of PROGRAMS) visit(p);
  for (const p of files.keys()) {
    const name = posix.basename(p);
    if (isLibrary(p) && (name.startsWith("ld-linux") || DLOPENED.test(name))) visit(p);
  }
  return kept;
}

function isLibrary(path: string): boolean {
  return /^usr\/lib(64)?\//.test(path);
}

/** Maps a path from a (possibly not merged) .deb into the merged-/usr image layout. */
export function toMergedUsr(path: string): string {
  return /^(bin|sbin|lib|lib64)\//.test(path) ? `usr/${path}` : path;
}

/** Downloads (or finds in the cache) the guest's .debs; cheap when they are there. */
export async function fetchGuestDebs(arch: ArchSpec, log: Logger): Promise<string[]> {
  const apt = new PrivateApt(DEBIAN_UNSTABLE, log);
  return apt.download(
    GUEST_PACKAGES.map((p) => `${p}:${arch.debianArch}`),
    join(cacheRoot(), "debs", arch.debianArch),
  );
}

/** Reads the wanted files out of the .debs (the slow part: only on an image cache miss). */
export async function extractUserspace(arch: ArchSpec, debs: readonly string[]): Promise<Userspace> {
  const files = new Map<string, UserspaceFile>();
  for (const deb of debs) {
    const entries = await extractFiles(deb, (p) => WANTED.some((re) => re.test(p)));
    for (const e of entries.values()) {
      const file = toUserspaceFile(e);
      if (file) files.set(file.path, file);
    }
  }
  for (const needed of PROGRAMS) {
    if (!files.has(needed)) {
      throw new HarnessError(
        `Debian's packages for ${arch.debianArch} no longer ship /${needed} where expected`,
        debs,
      );
    }
  }
  const kept = neededClosure(files);
  return {
    files: [...files.values()].filter((f) => kept.has(f.path)).sort((a, b) => a.path.localeCompare(b.path)),
    debs: debs.map((d) => d.split("/").pop() ?? d),
  };
}

function toUserspaceFile(e: DebEntry): UserspaceFile | undefined {
  const path = toMergedUsr(e.path);
  if (e.type === "symlink" && e.linkname) return { path, kind: "symlink", mode: 0o777, target: e.linkname };
  if (e.type === "file" && e.data) return { path, kind: "file", mode: e.mode, data: e.data };
  return undefined;
}
