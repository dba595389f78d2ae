// Free space where the harness writes (the cache, the run's folder, its scratch folder): checked
// before a run starts, and a write that fails for want of space (ENOSPC, EDQUOT) told in one
// sentence naming the path and what is free there, instead of a harness bug.
import { statfs } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { HarnessError } from "../errors.js";

export interface SpaceNeed {
  readonly path: string;
  readonly mib: number;
  /** What goes there, for the sentence: "--out (artifacts and console logs)". */
  readonly what: string;
}

/** MiB free to this user on the filesystem of `path` (its nearest existing ancestor). */
export async function freeMiB(path: string): Promise<number> {
  for (let p = resolve(path); ; p = dirname(p)) {
    const s = await statfs(p).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT" && dirname(p) !== p) return undefined;
      throw e;
    });
    if (s) return Math.floor((s.bavail * s.bsize) / 2 ** 20);
  }
}

/** Refuses, in one sentence per shortage, to start where a need is not met. */
export async function requireFreeSpace(needs: readonly SpaceNeed[], forWhat: string): Promise<void> {
  const short: string[] = [];
  for (const n of needs) {
    const free = await freeMiB(n.path);
    if (free < n.mib)
      short.push(`only ${free} MiB free for ${n.what} at ${n.path}, ${forWhat} needs ${n.mib} MiB there`);
  }
  const [first, ...rest] = short;
  if (first) throw new HarnessError(`${first}: free some space or point it elsewhere`, rest);
}

/** A write that failed for want of space. */
export function isDiskFull(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** The disk-full sentence: the path the write failed on and what is free there now. */
export async function diskFullMessage(err: NodeJS.ErrnoException): Promise<string> {
  const path = err.path ?? (err as { dest?: string }).dest;
  const free = path ? await freeMiB(path).catch(() => undefined) : undefined;
  return `no space left on the device writing ${path ?? "a file"}${free !== undefined ? ` (${free} MiB free there now)` : ""} (${err.code ?? "ENOSPC"})`;
}
