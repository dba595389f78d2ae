// The cross-process cache lock: a live owner is waited for, a dead one's lock is taken over (and
// the process groups it left running are ended), and the holder runs alone. Real processes stand
// in for the other kho: a child node holding the lock, a killed child's pid, a detached sleep.
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { progressText, parseTimes } from "../../src/kernel/build.js";
import { buildOnce, ownerAlive, processStart, withEntryLock } from "../../src/util/entry-lock.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kho-lock-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A pid that existed and is gone now. */
async function deadPid(): Promise<number> {
  const child = spawn("true");
  await new Promise((resolve) => child.on("exit", resolve));
  return child.pid as number;
}

describe("withEntryLock", () => {
  it("runs one holder at a time; the second waits, saying for whom, then runs", async () => {
    const lock = join(dir, "a.lock");
    const order: string[] = [];
    const lines: string[] = [];
    let release!: () => void;
    const first = withEntryLock(lock, "building A", { log: () => undefined }, async () => {
      order.push("first in");
      await new Promise<void>((r) => (release = r));
      order.push("first out");
    });
    await new Promise((r) => setTimeout(r, 50));
    const second = withEntryLock(lock, "building A", { log: (l) => lines.push(l), pollMs: 20 }, () => {
      order.push("second in");
      return Promise.resolve();
    });
    await new Promise((r) => setTimeout(r, 150));
    expect(order).toEqual(["first in"]);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(["first in", "first out", "second in"]);
    expect(lines[0]).toBe(`# waiting for another kho process (pid ${process.pid}) to finish building A`);
    await expect(readFile(lock)).rejects.toThrow(); // released
  });

  it("takes over the lock of a process that is gone, and says so", async () => {
    const lock = join(dir, "b.lock");
    const pid = await deadPid();
    await writeFile(lock, JSON.stringify({ pid, start: "1", what: "building B" }));
    const lines: string[] = [];
    let ran = false;
    await withEntryLock(lock, "building B", { log: (l) => lines.push(l), pollMs: 20 }, () => {
      ran = true;
      return Promise.resolve();
    });
    expect(ran).toBe(true);
    expect(lines.join("\n")).toContain(`taking over the lock of kho process ${pid}, which is gone`);
  });

  it("does not mistake a reused pid for the owner: a different start time is a dead owner", async () => {
    const start = await processStart(process.pid);
    expect(start).toMatch(/^\d+$/);
    expect(await ownerAlive({ pid: process.pid, start: start ?? null, what: "" })).toBe(true);
    expect(await ownerAlive({ pid: process.pid, start: "1", what: "" })).toBe(false);
    expect(await ownerAlive({ pid: await deadPid(), start: null, what: "" })).toBe(false);
  });

  /** A lock whose owner is gone, leaving process group `gpid` behind. */
  async function writeDeadOwnerLock(lock: string, gpid: number): Promise<void> {
    await writeFile(
      lock,
      JSON.stringify({
        pid: await deadPid(),
        start: null,
        what: "x",
        groups: [{ pid: gpid, start: await processStart(gpid) }],
      }),
    );
  }

  it("ends the process group a dead owner left running before taking over", async () => {
    const lock = join(dir, "c.lock");
    const orphan = spawn("sleep", ["600"], { detached: true, stdio: "ignore" });
    const exited = new Promise((resolve) => orphan.on("exit", (_code, signal) => resolve(signal)));
    const gpid = orphan.pid as number;
    await writeDeadOwnerLock(lock, gpid);
    await withEntryLock(lock, "building C", { log: () => undefined, pollMs: 20 }, () => Promise.resolve());
    // SIGTERM first: a make deletes the target it was writing (a SIGKILL leaves it half-written)
    expect(await exited).toBe("SIGTERM");
  });

  it("kills a left-over group that ignores SIGTERM after the grace time", async () => {
    const lock = join(dir, "c2.lock");
    const orphan = spawn("sh", ["-c", "trap '' TERM; sleep 600"], { detached: true, stdio: "ignore" });
    const exited = new Promise((resolve) => orphan.on("exit", (_code, signal) => resolve(signal)));
    const gpid = orphan.pid as number;
    await new Promise((r) => setTimeout(r, 200)); // the trap is set
    await writeDeadOwnerLock(lock, gpid);
    const started = performance.now();
    await withEntryLock(lock, "building C2", { log: () => undefined, pollMs: 20 }, () => Promise.resolve());
    expect(await exited).toBe("SIGKILL");
    expect(performance.now() - started).toBeGreaterThanOrEqual(4_500);
  });

  it("waits for a holder in another process and sees its result (buildOnce)", async () => {
    const lock = join(dir, "d.lock");
    const entry = join(dir, "d.entry");
    // The other process: takes the lock (a file with its pid), writes the entry after 400 ms.
    const script = `
      const fs = require("fs");
      fs.writeFileSync(${JSON.stringify(lock)}, JSON.stringify({ pid: process.pid, start: null, what: "building D" }), { flag: "wx" });
      setTimeout(() => { fs.writeFileSync(${JSON.stringify(entry)}, "theirs"); fs.rmSync(${JSON.stringify(lock)}); }, 400);`;
    const other = spawn(process.execPath, ["-e", script], { stdio: "inherit" });
    const otherExited = new Promise((resolve) => other.on("exit", resolve));
    for (let i = 0; i < 100; i++) {
      if (await readFile(lock, "utf8").catch(() => "")) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const lines: string[] = [];
    let built = 0;
    const got = await buildOnce(
      lock,
      "building D",
      { log: (l) => lines.push(l), pollMs: 20 },
      async () => readFile(entry, "utf8").catch(() => undefined),
      () => {
        built++;
        return Promise.resolve("ours");
      },
    );
    await otherExited;
    expect(got).toBe("theirs");
    expect(built).toBe(0);
    expect(lines[0]).toBe(`# waiting for another kho process (pid ${other.pid}) to finish building D`);
  });
});

describe("kernel build progress", () => {
  it("bash's times: the children's user + system seconds", () => {
    expect(parseTimes("0m0.010s 0m0.002s\n5m3.500s 1m2.250s\n")).toBeCloseTo(303.5 + 62.25, 6);
    expect(() => parseTimes("garbage")).toThrow(/times/);
  });

  it("a percentage from the last count of this build directory, the time left from the recipe's last scratch build", () => {
    expect(progressText(10, 1000, {})).toBe("10 objects");
    expect(progressText(50, 1000, { objects: 200 })).toBe("50 objects (~25%)");
    // fresh directory, a scratch build of 1000 objects took 300 s: at 500 objects after 100 s,
    // the rate says 100 s left
    expect(progressText(500, 100_000, { scratch: { objects: 1000, buildMs: 300_000 } })).toBe(
      "500 objects (~50%), about 1m40s left",
    );
    // before 5 %: the last build's time minus what has passed
    expect(progressText(10, 20_000, { scratch: { objects: 1000, buildMs: 300_000 } })).toBe(
      "10 objects (~1%), about 4m40s left",
    );
  });
});
