// Memfds and sessions as the agent takes them (guest/agent/README.md, memfd options): the specs
// scenarios declare, turned into the agent's arguments, and the contents the host expects of
// each (its own model of the agent's fill, model.ts).
import { randomInt } from "node:crypto";
import { memfdPatternSha256, type MemfdLayout } from "./model.js";

export const MiB = 1024 * 1024;

/**
 * Above this size a `restore`-mode restore does not hash: the agent checks every byte against
 * its model in the guest (`nohash`), since SHA-256 of 256 MiB takes about 5 s under TCG. The
 * preserve step checked the same bytes against the host's own model (hash or frames), so the
 * agent's model is already tied to the host's.
 */
export const HASH_LIMIT = 64 * MiB;

/** One memfd as the agent creates it. */
export interface MemfdSpec {
  readonly token: number;
  readonly size: number;
  /** Pattern seed; `seeded()` gives a fresh random one when absent. */
  readonly seed?: bigint;
  readonly fill?: "write" | "mmap";
  readonly sparse?: number;
  readonly truncate?: number;
  readonly pos?: number;
  /** F_ADD_SEALS names joined by "+", e.g. "shrink+grow". */
  readonly seals?: string;
  readonly thp?: boolean;
  readonly hugetlb?: boolean;
  /** Filled under MPOL_BIND to this NUMA node; the agent reports its pages per node. */
  readonly node?: number;
  /** A failed PRESERVE_FD / RETRIEVE_FD is reported by the agent instead of ending it. */
  readonly try?: boolean;
  /** The agent's probe-freeze: size changes and writes, each reported as "ok" or an errname. */
  readonly probeFreeze?: boolean;
}

export interface SessionSpec {
  readonly name: string;
  readonly memfds: readonly MemfdSpec[];
}

export type SeededMemfd = MemfdSpec & { readonly seed: bigint };
export interface SeededSession {
  readonly name: string;
  readonly memfds: readonly SeededMemfd[];
}

/** Fresh random seeds for memfds that have none, so every run writes new contents. */
export function seeded(sessions: readonly SessionSpec[]): SeededSession[] {
  return sessions.map((s) => ({
    ...s,
    memfds: s.memfds.map((m) => ({ ...m, seed: m.seed ?? BigInt(randomInt(1, 2 ** 47)) })),
  }));
}

/**
 * How the agent vouches for a memfd's contents. `hash`: SHA-256 of what it reads back, compared
 * with the host's. `host-reads`: it does not read them (`noread`); the host reads the memfd's
 * frames from guest memory and compares them with its model (before the kexec: 0.1 s of
 * read-back and SHA-256 under TCG saved). `model`: the agent compares what it reads back with
 * its model of the pattern (`nohash`), tied to the host's by a boot-1 check.
 */
export type ContentsCheck = "hash" | "host-reads" | "model";

/** `TOKEN:SIZE:opts` for the agent. */
export function memfdArg(m: MemfdSpec, check: ContentsCheck = "hash"): string {
  const opts = [
    m.seed !== undefined ? `seed=${m.seed}` : "",
    m.fill ?? "",
    m.sparse ? `sparse=${m.sparse}` : "",
    m.truncate !== undefined ? `truncate=${m.truncate}` : "",
    m.pos !== undefined ? `pos=${m.pos}` : "",
    m.seals ? `seal=${m.seals}` : "",
    m.thp ? "thp" : "",
    m.hugetlb ? "hugetlb" : "",
    m.node !== undefined ? `node=${m.node}` : "",
    m.try ? "try" : "",
    m.probeFreeze ? "probe-freeze" : "",
    check === "model" ? "nohash" : check === "host-reads" ? "noread" : "",
  ].filter(Boolean);
  return `${m.token}:${m.size}${opts.length ? `:${opts.join(",")}` : ""}`;
}

/**
 * `--session NAME --memfd ...` for every session, every memfd checked as `mode` says (see
 * ContentsCheck); `restore` hashes up to HASH_LIMIT and checks bigger memfds against the model.
 */
export function sessionArgs(
  sessions: readonly SessionSpec[],
  mode: ContentsCheck | "restore" = "hash",
): string {
  const check = (m: MemfdSpec): ContentsCheck =>
    mode === "restore" ? (m.size <= HASH_LIMIT ? "hash" : "model") : mode;
  return sessions
    .map((s) => [`--session ${s.name}`, ...s.memfds.map((m) => `--memfd ${memfdArg(m, check(m))}`)].join(" "))
    .join(" ");
}

export const layoutOf = (m: MemfdSpec): MemfdLayout => ({
  ...(m.sparse ? { sparse: m.sparse } : {}),
  ...(m.truncate !== undefined ? { truncate: m.truncate } : {}),
});

/** The SHA-256 the host expects for a memfd, from its own model of the agent's fill. */
export function expectedSha(m: SeededMemfd): string {
  return memfdPatternSha256(m.seed, m.size, layoutOf(m));
}

/** Every memfd of every session with its session: what a check walks. */
export function eachMemfd<M extends MemfdSpec>(
  sessions: readonly { readonly name: string; readonly memfds: readonly M[] }[],
): [{ readonly name: string }, M][] {
  return sessions.flatMap((s) => s.memfds.map((m): [{ readonly name: string }, M] => [s, m]));
}

export function formatBytes(n: number): string {
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}
