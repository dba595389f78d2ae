// One builder per cache entry across processes: two nightly jobs on one machine, or a user's
// second terminal, must not build into the same cache entry or O= directory at once. The lock is
// a file created with O_EXCL holding its owner's pid and that process's start time (so a reused
// pid is not mistaken for the owner); a lock whose owner is gone is taken over, not waited on.
import { endProcessGroup } from "./process-group.js";
import { mkdir, open, readFile, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { writeFileAtomic } from "./build-slot.js";
import type { Logger } from "./log.js";

export interface LockOwner {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot), or null where /proc is absent. */
  readonly start: string | null;
  readonly what: string;
  /** Process groups the owner started (make and its compilers): a killed owner leaves them
   *  running, writing into the entry, so the process that takes the lock over ends them first. */
  readonly groups?: readonly { readonly pid: number; readonly start: string | null }[];
}

/** What the lock holder can do: record a process group it started (see LockOwner.groups). */
export interface HeldLock {
  adopt(pid: number): Promise<void>;
}

/** The start time of a live process, null when it does not exist. */
export async function processStart(pid: number): Promise<string | null | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) {
    try {
      process.kill(pid, 0);
      return null; // alive, but no /proc to tell its start time
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === "EPERM" ? null : undefined;
    }
  }
  // comm (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[19] ?? null;
}

/** Whether the recorded owner still runs (same pid and, where known, the same start time). */
export async function ownerAlive(owner: LockOwner): Promise<boolean> {
  const start = await processStart(owner.pid);
  if (start === undefined) return false;
  return owner.start === null || start === null || start === owner.start;
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockOwner>;
    if (typeof v.pid === "number" && Number.isInteger(v.pid) && v.pid > 0)
      return {
        pid: v.pid,
        start: typeof v.start === "string" ? v.start : null,
        what: String(v.what ?? ""),
        groups: Array.isArray(v.groups)
          ? v.groups.filter(
              (g: { pid?: unknown }) => typeof g.pid === "number" && Number.isInteger(g.pid) && g.pid > 1,
            )
          : [],
      };
  } catch {
    /* a lock file cut short by a crash: treated as stale below */
  }
  return undefined;
}

export interface LockOptions {
  readonly log: Logger;
  /** How often a waiter looks again. */
  readonly pollMs?: number;
}

/**
 * Runs `fn` holding the lock at `lockPath` (an entry's path plus ".lock"). A live owner is
 * waited for, with one line saying so; a dead owner's lock is removed and taken. The lock is
 * released when `fn` settles; a process killed while holding it leaves a stale lock that the
 * next process takes over.
 */
export async function withEntryLock<T>(
  lockPath: string,
  what: string,
  opts: LockOptions,
  fn: (lock: HeldLock) => Promise<T>,
): Promise<T> {
  let me: LockOwner = {
    pid: process.pid,
    start: (await processStart(process.pid)) ?? null,
    what,
    groups: [],
  };
  await mkdir(dirname(lockPath), { recursive: true });
  let said = false;
  const waitStarted = performance.now();
  for (;;) {
    try {
      const handle = await open(lockPath, "wx");
      await handle.writeFile(JSON.stringify(me));
      await handle.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const text = await readFile(lockPath, "utf8").catch(() => undefined);
    if (text === undefined) continue; // released between our open and our read
    const owner = parseOwner(text);
    // An empty or half-written file may be a live owner between its open and its write.
    if (!owner && performance.now() - waitStarted < 2000) {
      await sleep(opts.pollMs ?? 500);
      continue;
    }
    if (!owner || !(await ownerAlive(owner))) {
      opts.log(
        `# ${what}: taking over the lock of ${owner ? `kho process ${owner.pid}, which is gone` : "a process that left it unreadable"} (${lockPath})`,
      );
      // Only the file we judged stale: a third process may have taken it over meanwhile.
      if ((await readFile(lockPath, "utf8").catch(() => undefined)) === text) {
        await endGroups(owner?.groups ?? [], opts.log, what);
        await rm(lockPath, { force: true });
      }
      continue;
    }
    if (!said) {
      opts.log(`# waiting for another kho process (pid ${owner.pid}) to finish ${owner.what || what}`);
      said = true;
    }
    await sleep(opts.pollMs ?? 500);
  }
  if (said)
    opts.log(
      `# ${what}: the other kho process is done (waited ${((performance.now() - waitStarted) / 1000).toFixed(1)} s)`,
    );
  const held: HeldLock = {
    adopt: async (pid) => {
      me = { ...me, groups: [...(me.groups ?? []), { pid, start: (await processStart(pid)) ?? null }] };
      await writeFileAtomic(lockPath, JSON.stringify(me));
    },
  };
  try {
    return await fn(held);
  } finally {
    await rm(lockPath, { force: true });
  }
}

/** Ends the process groups a dead owner left running (each checked by its start time). */
async function endGroups(groups: NonNullable<LockOwner["groups"]>, log: Logger, what: string): Promise<void> {
  for (const g of groups) {
    const start = await processStart(g.pid);
    if (start === undefined || (g.start !== null && start !== null && start !== g.start)) continue;
    log(`# ${what}: ending process group ${g.pid} that the gone owner left running`);
    await endProcessGroup(g.pid);
    for (let i = 0; i < 50 && (await processStart(g.pid)) !== undefined; i++) await sleep(100);
  }
}

/**
 * The usual shape of a cache entry: `lookup` says whether it is there; if not, the lock is taken,
 * the entry looked up again (another process may have built it while we waited), and only then
 * built.
 */
export async function buildOnce<T>(
  lockPath: string,
  what: string,
  opts: LockOptions,
  lookup: () => Promise<T | undefined>,
  build: (lock: HeldLock) => Promise<T>,
): Promise<T> {
  const found = await lookup();
  if (found !== undefined) return found;
  return withEntryLock(lockPath, what, opts, async (lock) => (await lookup()) ?? (await build(lock)));
}
