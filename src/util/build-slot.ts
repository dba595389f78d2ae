// Cache builders write into a private path and rename it into place, so a half-built entry is
// never visible. Under `--jobs N` several scenarios of one process ask for the same entry at once:
// the private path must differ per call (not only per process), and the work is worth sharing.

import { rename, writeFile } from "node:fs/promises";

let next = 0;

/** A path next to `finalPath` that no other build uses, in this process or another. */
export function workPath(finalPath: string): string {
  next += 1;
  return `${finalPath}.tmp-${process.pid}-${next}`;
}

/** Writes `data` to `path` through a private name and a rename: readers see all or nothing. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = workPath(path);
  await writeFile(tmp, data);
  await rename(tmp, path);
}

const inflight = new Map<string, Promise<unknown>>();

/** Runs `build` once at a time per key in this process; concurrent callers share its result. */
export function sharedBuild<T>(key: string, build: () => Promise<T>): Promise<T> {
  const running = inflight.get(key);
  if (running) return running as Promise<T>;
  const promise = build().finally(() => inflight.delete(key));
  inflight.set(key, promise);
  return promise;
}
