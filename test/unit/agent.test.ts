// Builds the guest agent for the host's arch and runs what works without /dev/liveupdate:
// memfd fill, SHA-256 and pagemap (`preserve --no-luo`), plus preserve → restore against a
// stand-in LUO compiled into a test build, so the JSON the host parses is exercised end to end.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { archSpec, type ArchName } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { parseAgentLine } from "../../src/agent/client.js";
import { memfdPattern, memfdPatternSha256 } from "../../src/agent/model.js";
import {
  AgentInfoSchema,
  AgentOkSchema,
  AgentPreserveResultSchema,
  AgentTryRestoreResultSchema,
} from "../../src/agent/protocol.js";
import { AGENT_SOURCES, buildAgent } from "../../src/image/agent-build.js";

const arch: ArchName = process.arch === "arm64" ? "arm64" : "x86_64";
const cc = `${archSpec(arch).crossCompile}gcc`;
const ccProbe = await execa(cc, ["--version"], { reject: false });
const skipReason = ccProbe.failed
  ? `${cc} is not installed`
  : process.platform !== "linux"
    ? "not Linux"
    : "";
if (skipReason) console.log(`agent tests skipped: ${skipReason}`);

const PAGE = 4096;

interface MemfdResult {
  token: string;
  size: number;
  pos: number;
  seals: number;
  seal_names: string[];
  sha256: string;
  expected?: { size: number; sha256: string; match: boolean; first_mismatch: number | null };
  pages: number;
  pages_present: number;
  pfns: [number | null, number][] | null;
  freeze_probe?: Record<string, string>;
  retrieve_error?: { errno: number; errname: string };
}
interface SessionResult {
  name: string;
  fd: number;
  memfds: MemfdResult[];
  finished?: boolean;
  carry?: { fd: number; memfds: { token: string; pfns: unknown }[] } | null;
  after_finish?: Record<string, unknown>;
}
interface AgentResult {
  ok: boolean;
  command: string;
  luo: boolean;
  errname?: string | null;
  step?: string;
  sessions: SessionResult[];
  ioctls: { ioctl: string; session?: string; token?: string; ret: number; errname?: string }[];
}

/** The agent's model of a memfd: pattern in written pages, zeros in holes and past a truncation. */
function expectedContents(
  size: number,
  seed: bigint,
  opts: { sparse?: number; truncate?: number } = {},
): Uint8Array {
  const out = new Uint8Array(size);
  const live = opts.truncate !== undefined && opts.truncate < size ? opts.truncate : size;
  for (let page = 0; page * PAGE < live; page++) {
    if (opts.sparse && page % opts.sparse !== 0) continue;
    const start = page * PAGE;
    out.set(memfdPattern(seed, start, Math.min(PAGE, live - start)), start);
  }
  return out;
}

const sha = (d: Uint8Array) => createHash("sha256").update(d).digest("hex");

/**
 * The schema the host checks a command's line against (src/agent/protocol.ts): every line the
 * agent prints here must pass it, so the C side and the host's one definition cannot drift.
 * The local interfaces above only add fields the host does not read (ioctls, fds, seal names).
 */
function schemaFor(args: readonly string[]) {
  if (args[0] === "info") return AgentInfoSchema;
  if (args[0] === "preserve" || args[0] === "restore")
    return args.some((a) => /:try\b|,try\b/.test(a))
      ? AgentTryRestoreResultSchema
      : AgentPreserveResultSchema;
  return AgentOkSchema;
}

async function runAgent(bin: string, args: string[], env: Record<string, string> = {}) {
  const r = await execa(bin, args, { reject: false, env, input: "" });
  const lines = r.stdout.split("\n").filter(Boolean);
  if (lines[0]) parseAgentLine(schemaFor(args), lines[0], `kho-agent ${args.join(" ")}`, r.stderr);
  return { exitCode: r.exitCode, lines, result: JSON.parse(lines[0] ?? "null") as AgentResult };
}

describe.skipIf(skipReason !== "")("kho-agent", () => {
  let dir = "";
  let bin = "";
  const include = process.env.KHO_UAPI_INCLUDE ?? "";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "agent-test-"));
    // without kernel headers the agent uses its own copy of the LUO uapi
    const uapi = include || join(dir, "no-uapi");
    await mkdir(uapi, { recursive: true });
    bin = await buildAgent(arch, { uapiInclude: uapi, outDir: join(dir, "bin") });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reuses the cached binary", async () => {
    const before = await stat(bin);
    const again = await buildAgent(arch, {
      uapiInclude: include || join(dir, "no-uapi"),
      outDir: join(dir, "bin"),
    });
    expect(again).toBe(bin);
    expect((await stat(again)).mtimeMs).toBe(before.mtimeMs);
  });

  it("reports a compile failure with the compiler's lines", async () => {
    const broken = join(dir, "broken-uapi");
    await mkdir(join(broken, "linux"), { recursive: true });
    await writeFile(join(broken, "linux/liveupdate.h"), "#error this header is broken on purpose\n");
    const err = await buildAgent(arch, { uapiInclude: broken, outDir: join(dir, "bin") }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(HarnessError);
    expect((err as HarnessError).evidence.join("\n")).toMatch(/broken on purpose/);
  });

  it("fills, hashes and maps memfds (preserve --no-luo)", async () => {
    const { exitCode, result } = await runAgent(bin, [
      "preserve",
      "--no-luo",
      "--session",
      "s1",
      "--memfd",
      "26:40000",
      "--memfd",
      "7:64K:mmap,seed=99,sparse=3,truncate=20K,seal=shrink+grow,probe-freeze",
      "--session",
      "s2",
      "--memfd",
      "0x10:12K:truncate=40K,pos=5,rewrite=3",
      "--memfd",
      "5:4103:seed=11",
    ]);
    expect(exitCode).toBe(0);
    expect(result).toMatchObject({ ok: true, command: "preserve", luo: false, ioctls: [] });
    const [a, b] = result.sessions[0]?.memfds ?? [];
    const [c, odd] = result.sessions[1]?.memfds ?? [];
    expect(a).toMatchObject({ token: "26", size: 40000, pos: 40000, seals: 1, pages: 10 });
    expect(a?.sha256).toBe(sha(expectedContents(40000, 26n)));
    expect(b).toMatchObject({ token: "7", size: 65536, pos: 0, seal_names: ["shrink", "grow"] });
    expect(b?.sha256).toBe(sha(expectedContents(65536, 99n, { sparse: 3, truncate: 20480 })));
    // the host's streaming model (used for memfds too big to hold) agrees with the agent
    expect(b?.sha256).toBe(memfdPatternSha256(99n, 65536, { sparse: 3, truncate: 20480 }));
    expect(a?.sha256).toBe(memfdPatternSha256(26n, 40000));
    expect(b?.freeze_probe).toMatchObject({ ftruncate_grow: "EPERM", write_inside: "ok" });
    expect(c).toMatchObject({ token: "16", size: 12288, pos: 5 });
    expect(c?.sha256).toBe(sha(expectedContents(12288, 3n)));
    // a size that ends inside a word: the fill's whole-word stores stop before it, bytes finish it
    expect(odd?.sha256).toBe(sha(expectedContents(4103, 11n)));
    for (const m of [a, b, c, odd]) expect(m?.expected).toMatchObject({ match: true, first_mismatch: null });
    if (process.getuid?.() === 0) {
      // runs of [pfn, count] cover every page
      expect(a?.pfns?.reduce((n, [, count]) => n + count, 0)).toBe(10);
      expect(a?.pfns?.every(([pfn]) => typeof pfn === "number" && pfn > 0)).toBe(true);
    } else {
      expect(a?.pfns).toBeNull();
    }
  });

  it("noread: fills and maps the memfd without reading it back (the host reads its frames)", async () => {
    const { exitCode, result } = await runAgent(bin, [
      "preserve",
      "--no-luo",
      "--session",
      "s",
      "--memfd",
      "3:16K:noread",
    ]);
    expect(exitCode).toBe(0);
    const m = result.sessions[0]?.memfds[0];
    expect(m).toMatchObject({ token: "3", size: 16384, pos: 16384, pages: 4, sha256: null });
    expect(m).not.toHaveProperty("expected");
    if (process.getuid?.() === 0) expect(m?.pfns?.reduce((n, [, count]) => n + count, 0)).toBe(4);
  });

  it("node=N: fills under MPOL_BIND to the node and reports the pages per node (move_pages)", async () => {
    // node 0 exists on every host; the 2-node case runs in numa-memfd
    const { exitCode, result } = await runAgent(bin, [
      "preserve",
      "--no-luo",
      "--session",
      "s",
      "--memfd",
      "4:32K:node=0",
    ]);
    expect(exitCode).toBe(0);
    expect(result.sessions[0]?.memfds[0]).toMatchObject({ token: "4", pages: 8, nodes: { "0": 8 } });
    const off = await runAgent(bin, ["preserve", "--no-luo", "--session", "s", "--memfd", "4:32K:node=63"]);
    // a node the host does not have: set_mempolicy refuses, the agent says so
    expect(off.exitCode).toBe(1);
    expect(JSON.stringify(off.result)).toMatch(/set_mempolicy/);
  });

  it("answers errors with one JSON object and exit code 1", async () => {
    const usage = await runAgent(bin, ["preserve", "--no-luo", "--session", "s", "--memfd", "1:4K:frob"]);
    expect(usage.exitCode).toBe(1);
    expect(usage.result).toMatchObject({ ok: false, step: "usage", errname: null });
    if (!existsSync("/dev/liveupdate")) {
      const r = await runAgent(bin, ["restore", "--session", "s"]);
      expect(r.exitCode).toBe(1);
      expect(r.result).toMatchObject({
        ok: false,
        command: "restore",
        step: "open_liveupdate",
        errname: "ENOENT",
      });
    }
  });

  it("holds its fds under --wait until abort or EOF", async () => {
    const r = await execa(bin, ["preserve", "--no-luo", "--session", "s", "--memfd", "1:4K", "--wait"], {
      input: "ping\nabort\n",
    });
    const lines = r.stdout.split("\n").map((l) => JSON.parse(l) as { ok: boolean; event?: string });
    expect(lines.map((l) => l.event)).toEqual([undefined, "pong", "abort"]);
  });

  /**
   * The agent built for the host against a stand-in LUO that keeps files under FAKE_LUO_DIR,
   * and KHO's debugfs files read from `<dir>/kho-<name>`.
   */
  async function standInLuo(
    name: string,
    defines: readonly string[] = [],
  ): Promise<{ fake: string; env: { FAKE_LUO_DIR: string } }> {
    const fake = join(dir, `fake-agent-${name}`);
    await writeFile(join(dir, "fake-luo.h"), FAKE_LUO);
    await execa(cc, [
      "-O1",
      "-include",
      join(dir, "fake-luo.h"),
      '-DLIVEUPDATE_DEV="/dev/null"',
      `-DKHO_DEBUGFS="${join(dir, `kho-${name}`)}"`,
      ...defines,
      "-o",
      fake,
      ...AGENT_SOURCES,
    ]);
    const env = { FAKE_LUO_DIR: join(dir, `luo-${name}`) };
    await mkdir(env.FAKE_LUO_DIR);
    return { fake, env };
  }

  it("--wait loads the next kernel behind the preservation; kexec reports a failed load and exits (stand-in load)", async () => {
    // kexec_file_load stands in as a 0.3 s call failing with ENOEXEC: the host is never kexec'd
    const { fake, env } = await standInLuo("bg-load", [
      "-DKEXEC_FILE_LOAD(k,i,n,c,f)=(usleep(300000), errno = ENOEXEC, -1)",
    ]);
    const kernel = join(dir, "not-a-kernel");
    await writeFile(kernel, "MZ");
    const args = ["preserve", "--session", "s", "--memfd", "1:8K", "--kexec-kernel", kernel, "--wait"];
    const kexec = await execa(fake, args, { env, input: "kexec\n", reject: false });
    const [result, failure, ...rest] = kexec.stdout
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(result).toMatchObject({ ok: true, kexec_load: { ok: true, background: true, kernel, flags: 4 } });
    expect(failure).toMatchObject({ ok: false, step: "kexec_file_load", errname: "ENOEXEC" });
    expect(rest).toEqual([]);
    expect(kexec.exitCode).toBe(1);
    // abort waits for the load too, and the agent ends well
    const abort = await execa(fake, args, { env, input: "abort\n" });
    expect(abort.stdout.split("\n").map((l) => (JSON.parse(l) as { event?: string }).event)).toEqual([
      undefined,
      "abort",
    ]);
    // a path that cannot be opened fails before anything is preserved, as without --wait
    const missing = await runAgent(
      fake,
      [...args.slice(0, 5), "--kexec-kernel", join(dir, "nope"), "--wait"],
      env,
    );
    expect(missing.exitCode).toBe(1);
    expect(missing.result).toMatchObject({ ok: false, step: "open_kernel", errname: "ENOENT" });
  });

  it("nohash: no SHA-256, the model check alone, and the first bad byte when one differs (stand-in LUO)", async () => {
    const { fake, env } = await standInLuo("nohash");
    const spec = ["--memfd", "1:20000:seed=77"];
    const pre = await runAgent(
      fake,
      ["preserve", "--session", "clean", ...spec, "--session", "bad", ...spec],
      env,
    );
    expect(pre.result.ok).toBe(true);
    // one byte of the "bad" session's stored contents flipped, as a broken handover would
    const stored = join(env.FAKE_LUO_DIR, "bad", "1");
    const bytes = await readFile(stored);
    bytes[12345] = (bytes[12345] ?? 0) ^ 0xff;
    await writeFile(stored, bytes);
    const nohash = ["--memfd", "1:20000:seed=77,nohash"];
    const post = await runAgent(
      fake,
      ["restore", "--session", "clean", ...nohash, "--session", "bad", ...nohash],
      env,
    );
    expect(post.result.ok).toBe(true);
    const [clean, bad] = post.result.sessions.map((s) => s.memfds[0]);
    expect(clean?.sha256).toBeNull();
    expect(clean?.expected).toEqual({ size: 20000, sha256: null, match: true, first_mismatch: null });
    expect(bad?.sha256).toBeNull();
    expect(bad?.expected).toMatchObject({ match: false, first_mismatch: 12345 });
    // the model's hash, as evidence of what the bytes should have been
    expect(bad?.expected?.sha256).toBe(pre.result.sessions[1]?.memfds[0]?.sha256);
  });

  it("--kho-state: the debugfs FDTs as base64 (null when absent) and the System RAM lines", async () => {
    const { fake, env } = await standInLuo("state-fdt");
    await mkdir(join(dir, "kho-state-fdt", "out"), { recursive: true });
    // every length mod 3 (padding), and bytes JSON would have to escape, around a 64 KiB buffer
    for (const size of [0, 1, 2, 3, 65536, 70001]) {
      const blob = Uint8Array.from({ length: size }, (_, i) => (i * 131 + (i >> 8)) & 0xff);
      await writeFile(join(dir, "kho-state-fdt", "out", "fdt"), blob);
      const r = await runAgent(fake, ["preserve", "--session", "s", "--kho-state"], env);
      const kho = (r.result as unknown as { kho: { out_fdt: string; in_fdt: null; system_ram: string } }).kho;
      expect(Buffer.from(kho.out_fdt, "base64").equals(Buffer.from(blob))).toBe(true);
      expect(kho.out_fdt).toBe(Buffer.from(blob).toString("base64"));
      expect(kho.in_fdt).toBeNull();
      // the host's /proc/iomem: as root the real top-level ranges, otherwise zeros; only those lines
      expect(kho.system_ram).toMatch(/^([0-9a-f]+-[0-9a-f]+ : System RAM\n)*$/);
    }
  });

  it("restores what it preserved (stand-in LUO)", async () => {
    const { fake, env } = await standInLuo("state");

    const pre = await runAgent(
      fake,
      [
        "preserve",
        "--session",
        "a",
        "--memfd",
        "1:10000:seal=write",
        "--memfd",
        "2:8K:mmap,pos=9",
        "--session",
        "empty",
      ],
      env,
    );
    expect(pre.result.ok).toBe(true);
    expect(pre.result.ioctls.map((i) => `${i.ioctl} ${i.session ?? ""} ${i.token ?? ""}`.trim())).toEqual([
      "CREATE_SESSION a",
      "GET_NAME a",
      "PRESERVE_FD a 1",
      "PRESERVE_FD a 2",
      "CREATE_SESSION empty",
      "GET_NAME empty",
    ]);
    const post = await runAgent(
      fake,
      [
        "restore",
        "--session",
        "a",
        "--memfd",
        "1:10000:seal=write",
        "--memfd",
        "2",
        "--session",
        "empty",
        "--carry",
      ],
      env,
    );
    expect(post.result.ok).toBe(true);
    const [before, after] = [pre.result.sessions[0], post.result.sessions[0]];
    for (const i of [0, 1]) {
      const [p, q] = [before?.memfds[i], after?.memfds[i]];
      expect([q?.token, q?.size, q?.pos, q?.seals, q?.sha256]).toEqual([
        p?.token,
        p?.size,
        p?.pos,
        p?.seals,
        p?.sha256,
      ]);
    }
    expect(after?.memfds[0]?.expected?.match).toBe(true);
    expect(after?.memfds[1]?.expected).toBeUndefined();
    expect(after).toMatchObject({ finished: true, carry: { memfds: [{ token: "1" }, { token: "2" }] } });
    expect(post.result.ioctls.map((i) => i.ioctl)).toEqual([
      "RETRIEVE_SESSION",
      "GET_NAME",
      "RETRIEVE_FD",
      "RETRIEVE_FD",
      "FINISH",
      "CREATE_SESSION",
      "PRESERVE_FD",
      "PRESERVE_FD",
      "RETRIEVE_SESSION",
      "GET_NAME",
      "FINISH",
      "CREATE_SESSION",
    ]);

    const missing = await runAgent(fake, ["restore", "--session", "a", "--memfd", "99"], env);
    expect(missing.exitCode).toBe(1);
    expect(missing.result).toMatchObject({
      ok: false,
      step: "retrieve_fd",
      errname: "ENOENT",
      token: "99",
      session: "a",
    });

    // try: a missing token is reported and the rest goes on; --after-finish uses the session again
    const tried = await runAgent(
      fake,
      [
        "restore",
        "--session",
        "a",
        "--memfd",
        "99::try",
        "--memfd",
        "2:8K",
        "--probe-token",
        "7",
        "--after-finish",
      ],
      env,
    );
    expect(tried.exitCode, tried.lines.join("\n")).toBe(0);
    const [gone, kept] = tried.result.sessions[0]?.memfds ?? [];
    expect(gone).toEqual({ token: "99", retrieve_error: { errno: 2, errname: "ENOENT" } });
    expect(kept?.expected?.match).toBe(true);
    expect(tried.result.sessions[0]?.after_finish).toMatchObject({
      retrieve_fd: [{ token: "99", result: "ENOENT" }, { token: "2" }, { token: "7", result: "ENOENT" }],
      finish_again: "ok",
      preserve_fd: "EINVAL", // the stand-in, like LUO, refuses PRESERVE_FD on an incoming session
      memfds: [
        { token: "2", freeze_probe: { ftruncate_grow: "ok", write_inside: "ok" }, sha256: kept?.sha256 },
      ],
    });
  });
});

// A stand-in for /dev/liveupdate, compiled into a test build with `-include`: sessions are
// directories under $FAKE_LUO_DIR and PRESERVE_FD copies the memfd's bytes, size, position and
// seals, so a later process can RETRIEVE_FD them. Struct fields by offset, as in the uapi.
const FAKE_LUO = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static struct { char name[65]; int outgoing; } fake_sessions[4096];

static void fake_path(char *buf, size_t len, const char *session, uint64_t token, const char *ext)
{
	snprintf(buf, len, "%s/%s/%llu%s", getenv("FAKE_LUO_DIR"), session, (unsigned long long)token, ext);
}

static int fake_ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	uint8_t *arg = va_arg(ap, uint8_t *);
	va_end(ap);
	int32_t *argfd = (int32_t *)(arg + 4);
	uint64_t token = *(uint64_t *)(arg + 8);
	char path[4096];
	const char *session = fake_sessions[fd].name;
	long long size, pos;
	int seals;
	FILE *meta;
	switch (cmd & 0xff) {
	case 0x00:
	case 0x01: {
		char name[65] = { 0 };
		memcpy(name, arg + 8, 64);
		if (!name[0] || strlen(name) > 63)
			return errno = EINVAL, -1;
		snprintf(path, sizeof(path), "%s/%s", getenv("FAKE_LUO_DIR"), name);
		if ((cmd & 0xff) == 0x00 && mkdir(path, 0700) && errno != EEXIST)
			return -1;
		if ((cmd & 0xff) == 0x01 && access(path, F_OK))
			return errno = ENOENT, -1;
		int s = open("/dev/null", O_RDONLY | O_CLOEXEC);
		strcpy(fake_sessions[s].name, name);
		fake_sessions[s].outgoing = (cmd & 0xff) == 0x00;
		*argfd = s;
		return 0;
	}
	case 0x40: {
		if (!fake_sessions[fd].outgoing)
			return errno = EINVAL, -1;
		struct stat st;
		fstat(*argfd, &st);
		char *buf = malloc(st.st_size + 1);
		if (pread(*argfd, buf, st.st_size, 0) != st.st_size)
			return -1;
		fake_path(path, sizeof(path), session, token, "");
		int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (write(f, buf, st.st_size) != st.st_size)
			return -1;
		close(f);
		free(buf);
		fake_path(path, sizeof(path), session, token, ".meta");
		meta = fopen(path, "w");
		fprintf(meta, "%lld %lld %d\n", (long long)st.st_size, (long long)lseek(*argfd, 0, SEEK_CUR),
			fcntl(*argfd, F_GET_SEALS));
		fclose(meta);
		return 0;
	}
	case 0x41: {
		if (fake_sessions[fd].outgoing)
			return errno = EINVAL, -1;
		fake_path(path, sizeof(path), session, token, ".meta");
		meta = fopen(path, "r");
		if (!meta)
			return errno = ENOENT, -1;
		if (fscanf(meta, "%lld %lld %d", &size, &pos, &seals) != 3)
			return errno = EIO, -1;
		fclose(meta);
		fake_path(path, sizeof(path), session, token, "");
		int f = open(path, O_RDONLY);
		char *buf = malloc(size + 1);
		if (read(f, buf, size) != size)
			return errno = EIO, -1;
		close(f);
		int mfd = memfd_create("", MFD_ALLOW_SEALING | MFD_CLOEXEC);
		if (pwrite(mfd, buf, size, 0) != size)
			return -1;
		free(buf);
		lseek(mfd, pos, SEEK_SET);
		fcntl(mfd, F_ADD_SEALS, seals);
		*argfd = mfd;
		return 0;
	}
	case 0x42:
		return fake_sessions[fd].outgoing ? (errno = EINVAL, -1) : 0;
	case 0x43:
		memcpy(arg + 8, fake_sessions[fd].name, 64);
		return 0;
	}
	return errno = EINVAL, -1;
}
#define ioctl fake_ioctl
`;
