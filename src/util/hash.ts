import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { cacheRoot } from "../paths.js";
import { writeFileAtomic } from "./build-slot.js";

export function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** What identifies one version of a file without reading it (ctime cannot be set by hand). */
async function fileIdentity(path: string): Promise<string> {
  const s = await stat(path, { bigint: true });
  return [s.dev, s.ino, s.size, s.mtimeNs, s.ctimeNs].join(":");
}

/**
 * `compute(path)`, remembered under `kind` against the file's identity (device, inode, size,
 * mtime and ctime in ns). Any write, truncation or replacement changes the identity, so it is
 * computed again; only a change that bypasses the file system (bit rot) goes unseen, as it does
 * for git and make.
 */
export async function rememberedForFile(
  path: string,
  kind: string,
  compute: (path: string) => Promise<string>,
): Promise<string> {
  const absolute = resolve(path);
  const stamp = join(cacheRoot(), "stamps", `${sha256(`${kind}\0${absolute}`).slice(0, 32)}.json`);
  const before = await fileIdentity(absolute);
  const saved = await readFile(stamp, "utf8")
    .then((t) => JSON.parse(t) as { path?: string; identity?: string; value?: string })
    .catch(() => undefined);
  if (saved?.path === absolute && saved.identity === before && typeof saved.value === "string")
    return saved.value;
  const value = await compute(absolute);
  // Changed meanwhile: the value belongs to no single version; do not remember it.
  if ((await fileIdentity(absolute)) === before) {
    await mkdir(dirname(stamp), { recursive: true })
      .then(() => writeFileAtomic(stamp, JSON.stringify({ path: absolute, identity: before, value })))
      .catch(() => undefined); // a read-only cache only costs the next run the computation
  }
  return value;
}

/** sha256File, remembered: hashing a 24 MiB kernel image costs ~0.1 s, twice per arch per run. */
export function fileSha256(path: string): Promise<string> {
  return rememberedForFile(path, "sha256", sha256File);
}

/** A stable short key for cache directory names. */
export function cacheKey(parts: Record<string, string>): string {
  return sha256(JSON.stringify(parts, Object.keys(parts).sort())).slice(0, 16);
}
