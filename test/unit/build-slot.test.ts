// Cache builders under --jobs: two scenarios of one process building the same entry at once
// once collided in one `.tmp-<pid>` folder (one removed it while the other compiled in it).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sharedBuild, workPath, writeFileAtomic } from "../../src/util/build-slot.js";

describe("workPath", () => {
  it("gives every call its own path next to the final one", () => {
    const a = workPath("/cache/kmod/entry");
    const b = workPath("/cache/kmod/entry");
    expect(a).not.toBe(b);
    for (const p of [a, b]) expect(p).toMatch(new RegExp(`^/cache/kmod/entry\\.tmp-${process.pid}-\\d+$`));
  });
});

describe("writeFileAtomic", () => {
  it("replaces the file whole and leaves no private copy behind", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kho-atomic-"));
    try {
      const path = join(dir, "kernel.json");
      await writeFileAtomic(path, "first\n");
      await writeFileAtomic(path, new TextEncoder().encode("second\n"));
      expect(readFileSync(path, "utf8")).toBe("second\n");
      expect(readdirSync(dir)).toEqual(["kernel.json"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("sharedBuild", () => {
  it("runs one build per key at a time and hands its result to every caller", async () => {
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const build = async () => {
      runs += 1;
      await gate;
      return `built ${runs}`;
    };
    const both = Promise.all([sharedBuild("k", build), sharedBuild("k", build)]);
    const other = sharedBuild("other", () => Promise.resolve("other"));
    release();
    expect(await both).toEqual(["built 1", "built 1"]);
    expect(await other).toBe("other");
    expect(runs).toBe(1);
    // Once settled, the key is free again (a later call may find the cache entry, or rebuild).
    expect(await sharedBuild("k", build)).toBe("built 2");
  });

  it("shares a failure too, then lets the next call try again", async () => {
    let runs = 0;
    const failing = () => {
      runs += 1;
      return Promise.reject(new Error(`make failed (${runs})`));
    };
    const results = await Promise.allSettled([sharedBuild("f", failing), sharedBuild("f", failing)]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(runs).toBe(1);
    await expect(sharedBuild("f", failing)).rejects.toThrow("make failed (2)");
  });
});
