// Two kho processes and one cache (issue 15): two `kho kernel build --arch x86_64` started at
// once on an empty cache build the kernel once (one builds, the other waits, then hits the
// cache), and a builder killed with SIGKILL leaves a stale lock that the next process takes
// over, ending the make the dead one left running. Real processes, real kernel builds.
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { processStart } from "../../src/util/entry-lock.js";
import { HOUR } from "./helpers.js";

let cache: string;
const env = () => ({ KHO_CACHE_DIR: cache });
// The harness process itself (what bin/kho launches): the process that holds the lock, so its
// pid is the one the other names, and SIGKILL kills the builder, not only its launcher.
const harness = ["--import", "tsx", "harness/kho.ts"];
const build = (...extra: string[]) =>
  execa(process.execPath, [...harness, "kernel", "build", "--arch", "x86_64", ...extra], {
    reject: false,
    env: env(),
    stdin: "ignore",
  });

interface ListedKernel {
  key: string;
  state: string;
}
async function listed(): Promise<ListedKernel[]> {
  const r = await execa(process.execPath, [...harness, "kernel", "list", "--json"], { env: env() });
  return (JSON.parse(r.stdout) as { key: string; lookup: { state: string } }[]).map((e) => ({
    key: e.key,
    state: e.lookup.state,
  }));
}

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), "kho-lock-cache-"));
});
afterAll(async () => {
  await rm(cache, { recursive: true, force: true });
});

/** Resolves when `text` appears in the child's stderr. */
function waitForLine(child: ResultPromise, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      seen += chunk.toString();
      const m = pattern.exec(seen);
      if (m) resolve(m[0]);
    });
    void child.then(() => reject(new Error(`exited before ${String(pattern)}:\n${seen}`)));
  });
}

describe("two kho processes, one cache", () => {
  it("build one kernel once: one builds, the other waits and hits the cache", { timeout: HOUR }, async () => {
    const a = build();
    const b = build();
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.exitCode, String(ra.stderr)).toBe(0);
    expect(rb.exitCode, String(rb.stderr)).toBe(0);
    const waitLine = /waiting for another kho process \(pid (\d+)\) to finish building the x86_64 kernel/;
    const waiters = [ra, rb].filter((r) => waitLine.test(String(r.stderr)));
    expect(waiters, "exactly one process waited for the kernel").toHaveLength(1);
    const waiter = waiters[0];
    const builder = waiter === ra ? rb : ra;
    const builderPid = waiter === ra ? b.pid : a.pid;
    expect(waitLine.exec(String(waiter?.stderr))?.[1]).toBe(String(builderPid));
    expect(String(builder.stdout)).toMatch(/built in .*CPU s/);
    expect(String(waiter?.stdout)).toMatch(/cache hit/);
    // One entry, whole, configured and built once.
    const entries = await listed();
    expect(entries.map((e) => e.state)).toEqual(["hit"]);
    const log = await readFile(join(cache, "kernels", entries[0]?.key ?? "?", "build.log"), "utf8");
    expect(log.match(/^\$ make .* olddefconfig/gm)).toHaveLength(1);
    expect(log.match(/^\$ make .* bzImage modules/gm)).toHaveLength(1);
  });

  it(
    "take over the lock of a builder killed with SIGKILL, ending the make it left",
    { timeout: HOUR },
    async () => {
      // A second recipe of the same tree (one option more): the same O= directory, so the same lock.
      const fragment = join(cache, "sysrq.config");
      await writeFile(fragment, "CONFIG_MAGIC_SYSRQ_DEFAULT_ENABLE=0x2\n");
      const doomed = build("--fragment", fragment);
      await waitForLine(doomed, /# x86_64: build\n/);
      const lockPath = join(
        cache,
        "build",
        (await readdir(join(cache, "build"))).find((f) => f.endsWith(".lock")) ?? "?",
      );
      // The lock names the builder and, once the build's make has started, its process group.
      let owner: { pid: number; groups: { pid: number }[] } | undefined;
      let makeGroup = -1;
      for (let i = 0; i < 600 && makeGroup < 0; i++) {
        owner = JSON.parse(await readFile(lockPath, "utf8")) as typeof owner;
        const last = owner?.groups.at(-1)?.pid;
        if (last !== undefined && (await processStart(last)) !== undefined) makeGroup = last;
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(owner?.pid).toBe(doomed.pid);
      expect(makeGroup, "the builder's make is running, recorded in the lock").toBeGreaterThan(1);
      doomed.kill("SIGKILL");
      await doomed;

      const next = await build("--fragment", fragment);
      expect(next.exitCode, String(next.stderr)).toBe(0);
      expect(String(next.stderr)).toContain(
        `taking over the lock of kho process ${doomed.pid}, which is gone`,
      );
      expect(String(next.stderr)).toContain(`ending process group ${makeGroup}`);
      expect(String(next.stdout)).toMatch(/built in/);
      expect(await processStart(makeGroup)).toBeUndefined();
      expect((await listed()).map((e) => e.state)).toEqual(["hit", "hit"]);
    },
  );
});
