// Builds the guest agent (guest/agent/*.c, init.c among them: the agent is also the guest's
// /init) as a static binary for one arch. Its fill pattern's host model is src/agent/model.ts.
import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { access, mkdir, readFile, realpath, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { archSpec, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { guestDir } from "../paths.js";
import { workPath } from "../util/build-slot.js";

/** Every file of guest/agent the build reads (its .c and .h files), sorted: what decides whether a cached binary still fits. */
const AGENT_FILES: readonly string[] = readdirSync(guestDir("agent"))
  .filter((f) => /\.[ch]$/.test(f))
  .sort()
  .map((f) => guestDir("agent", f));
/** The translation units compiled into the one static binary. */
export const AGENT_SOURCES: readonly string[] = AGENT_FILES.filter((f) => f.endsWith(".c"));
export const AGENT_CFLAGS: readonly string[] = ["-static", "-O2", "-Wall", "-Wextra", "-Werror"];

export interface AgentBuildOptions {
  /** `INSTALL_HDR_PATH/include` of the kernel under test (from `make headers_install`). */
  readonly uapiInclude: string;
  /** Where binaries are kept; one file per (source, compiler, headers) combination. */
  readonly outDir: string;
}

/** The uapi headers the agent includes: their bytes decide whether a cached binary still fits. */
const UAPI_FILES = [
  "linux/liveupdate.h",
  "linux/kexec.h",
  "linux/reboot.h",
  "linux/version.h",
  "linux/mempolicy.h",
];

/** Compiles the agent with the arch's (cross) gcc; returns the binary's path. Reuses a cached build. */
export async function buildAgent(arch: ArchName, opts: AgentBuildOptions): Promise<string> {
  const cc = `${archSpec(arch).crossCompile}gcc`;
  const [sources, ccVersion, headers] = await Promise.all([
    Promise.all(AGENT_FILES.map((f) => readFile(f))),
    compilerVersion(cc, arch),
    headerIdentity(opts.uapiInclude),
  ]);
  const hash = createHash("sha256");
  for (const source of sources) hash.update(source).update("\0");
  const key = hash
    .update("\0" + ccVersion + "\0" + headers + "\0" + AGENT_CFLAGS.join(" "))
    .digest("hex")
    .slice(0, 16);
  const out = join(opts.outDir, `kho-agent.${arch}.${key}`);
  if (await exists(out)) return out;

  await mkdir(opts.outDir, { recursive: true });
  // Build under a private name and rename: concurrent builds never see a half-written binary.
  const tmp = workPath(out);
  const r = await execa(cc, [...AGENT_CFLAGS, "-I", opts.uapiInclude, "-o", tmp, ...AGENT_SOURCES], {
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
