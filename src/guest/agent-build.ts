// Builds the guest agent (guest/agent/kho-agent.c) as a static binary for one arch, and mirrors
// its memfd fill pattern so the host can predict contents without trusting the guest.
import { createHash } from "node:crypto";
import { access, mkdir, readFile, realpath, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { archSpec, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { guestDir } from "../paths.js";

export const AGENT_SOURCE = guestDir("agent", "kho-agent.c");
export const AGENT_CFLAGS: readonly string[] = ["-static", "-O2", "-Wall", "-Wextra", "-Werror"];

export interface AgentBuildOptions {
  /** `INSTALL_HDR_PATH/include` of the kernel under test (from `make headers_install`). */
  readonly uapiInclude: string;
  /** Where binaries are kept; one file per (source, compiler, headers) combination. */
  readonly outDir: string;
}

/** The uapi headers the agent includes: their bytes decide whether a cached binary still fits. */
const UAPI_FILES = ["linux/liveupdate.h", "linux/kexec.h", "linux/reboot.h", "linux/version.h"];

/** Compiles the agent with the arch's (cross) gcc; returns the binary's path. Reuses a cached build. */
export async function buildAgent(arch: ArchName, opts: AgentBuildOptions): Promise<string> {
  const cc = `${archSpec(arch).crossCompile}gcc`;
  const [source, ccVersion, headers] = await Promise.all([
    readFile(AGENT_SOURCE),
    compilerVersion(cc, arch),
    headerIdentity(opts.uapiInclude),
  ]);
  const key = createHash("sha256")
    .update(source)
    .update("\0" + ccVersion + "\0" + headers + "\0" + AGENT_CFLAGS.join(" "))
    .digest("hex")
    .slice(0, 16);
  const out = join(opts.outDir, `kho-agent.${arch}.${key}`);
  if (await exists(out)) return out;

  await mkdir(opts.outDir, { recursive: true });
  // Build under a private name and rename: concurrent builds never see a half-written binary.
  const tmp = `${out}.tmp-${process.pid}`;
  const r = await execa(cc, [...AGENT_CFLAGS, "-I", opts.uapiInclude, "-o", tmp, AGENT_SOURCE], {
    reject: false,
    all: true,
  });
  if (r.failed) {
    await rm(tmp, { force: true });
    throw new HarnessError(`building kho-agent for ${arch} with ${cc} failed`, compilerEvidence(r.all ?? ""));
  }
  await rename(tmp, out);
  return out;
}

async function compilerVersion(cc: string, arch: ArchName): Promise<string> {
  const r = await execa(cc, ["--version"], { reject: false });
  if (r.failed) {
    const why = r.code === "ENOENT" ? "is not installed" : `does not run (${r.shortMessage})`;
    throw new HarnessError(`${cc} ${why}; install ${archSpec(arch).compilerPackage}`);
  }
  return r.stdout;
}

/** Which header tree this is: its real path plus the bytes of the headers the agent uses. */
async function headerIdentity(include: string): Promise<string> {
  const hash = createHash("sha256");
  hash.update(await realpath(include).catch(() => include));
  for (const f of UAPI_FILES) {
    hash.update(`\0${f}\0`);
    hash.update(await readFile(join(include, f)).catch(() => "absent"));
  }
  return hash.digest("hex");
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** The compiler's last lines, preceded by its first errors when those scrolled out (the cause). */
function compilerEvidence(text: string): string[] {
  const lines = text.trimEnd().split("\n");
  const tail = lines.slice(-20);
  const firstErrors = lines
    .slice(0, -20)
    .filter((l) => /\berror\b/.test(l))
    .slice(0, 3);
  return firstErrors.length ? [...firstErrors, "...", ...tail] : tail;
}

// The agent's fill pattern (guest/agent/kho-agent.c, pattern_word): byte o of a memfd with seed S
// is byte o % 8, little-endian, of splitmix64 step o / 8. It depends only on the offset, so any
// fill mode or sparse layout can be predicted page by page.
const M64 = (1n << 64n) - 1n;

function patternWord(seed: bigint, index: bigint): bigint {
  let z = (seed + (index + 1n) * 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

/** The agent's pattern bytes for `[offset, offset + length)` of a memfd filled with `seed`. */
export function memfdPattern(seed: bigint, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let i = 0;
  while (i < length) {
    const o = offset + i;
    const word = patternWord(seed, BigInt(Math.floor(o / 8)));
    for (let b = o % 8; b < 8 && i < length; b++) out[i++] = Number((word >> BigInt(8 * b)) & 0xffn);
  }
  return out;
}

/** SHA-256 of a memfd of `size` bytes the agent filled with `seed` (no holes): what the host
 *  expects, computed without asking the guest. */
export function memfdPatternSha256(seed: bigint, size: number): string {
  const hash = createHash("sha256");
  const chunk = 1 << 20;
  for (let off = 0; off < size; off += chunk)
    hash.update(memfdPattern(seed, off, Math.min(chunk, size - off)));
  return hash.digest("hex");
}
