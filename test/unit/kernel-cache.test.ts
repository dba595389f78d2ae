import { mkdtemp, mkdir, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  commitManifest,
  entryDir,
  listKernels,
  lookupKernel,
  MANIFEST_SCHEMA,
  newestKernel,
  type KernelManifest,
} from "../../src/kernel/cache.js";
import { sha256 } from "../../src/util/hash.js";

const saved = process.env.KHO_CACHE_DIR;
beforeAll(async () => {
  process.env.KHO_CACHE_DIR = await mkdtemp(join(tmpdir(), "kho-cache-"));
});
afterAll(async () => {
  const mine = process.env.KHO_CACHE_DIR;
  if (saved === undefined) delete process.env.KHO_CACHE_DIR;
  else process.env.KHO_CACHE_DIR = saved;
  if (mine) await rm(mine, { recursive: true, force: true });
});

async function fakeEntry(key: string, image: Buffer, builtAt: string): Promise<void> {
  const dir = entryDir(key);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "Image"), image);
  const manifest: KernelManifest = {
    schema: MANIFEST_SCHEMA,
    key,
    arch: "arm64",
    sourceIdentity: "test",
    sourceTree: "/nowhere",
    buildDir: "/nowhere",
    kernelRelease: "7.2.13",
    compiler: "gcc",
    fragments: [],
    configSha256: "",
    base: "lean",
    wallMs: 1,
    cpuSeconds: 1,
    image: "Image",
    imageSha256: sha256(image),
    imageSize: image.length,
    modulesDir: "modules",
    headersDir: "headers",
    builtAt,
    phaseMs: {},
    objectCount: 0,
  };
  await commitManifest(dir, manifest);
}

describe("kernel cache", () => {
  it("trusts a complete entry and finds the newest per arch", async () => {
    await fakeEntry("aaaa", Buffer.from("old kernel"), "2026-01-01T00:00:00Z");
    await fakeEntry("bbbb", Buffer.from("new kernel"), "2026-02-01T00:00:00Z");
    expect((await lookupKernel("aaaa")).state).toBe("hit");
    expect((await newestKernel("arm64"))?.manifest.key).toBe("bbbb");
    expect(await newestKernel("x86_64")).toBeUndefined();
  });

  it("reports a truncated image, a missing manifest and a miss", async () => {
    await fakeEntry("cccc", Buffer.alloc(4096, 7), "2026-03-01T00:00:00Z");
    await truncate(join(entryDir("cccc"), "Image"), 100);
    expect(await lookupKernel("cccc")).toEqual({ state: "corrupt", reason: "image size 100 != 4096" });
    await mkdir(entryDir("dddd"), { recursive: true });
    expect(await lookupKernel("dddd")).toEqual({
      state: "corrupt",
      reason: "no manifest (build interrupted)",
    });
    expect(await lookupKernel("eeee")).toEqual({ state: "miss" });
    expect((await listKernels()).map((e) => [e.key, e.lookup.state])).toEqual([
      ["aaaa", "hit"],
      ["bbbb", "hit"],
      ["cccc", "corrupt"],
      ["dddd", "corrupt"],
    ]);
  });

  it("detects same-size corruption by hash", async () => {
    await fakeEntry("ffff", Buffer.from("kernel bytes"), "2026-04-01T00:00:00Z");
    await writeFile(join(entryDir("ffff"), "Image"), Buffer.from("kernel bytez"));
    expect(await lookupKernel("ffff")).toEqual({ state: "corrupt", reason: "image hash mismatch" });
  });
});
