import { readdir, readFile, rm, utimes, writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileSha256, sha256 } from "../../src/util/hash.js";

const saved = process.env.KHO_CACHE_DIR;
let dir = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kho-hash-"));
  process.env.KHO_CACHE_DIR = join(dir, "cache");
});
afterAll(async () => {
  if (saved === undefined) delete process.env.KHO_CACHE_DIR;
  else process.env.KHO_CACHE_DIR = saved;
  await rm(dir, { recursive: true, force: true });
});

async function stampOf(): Promise<{ identity: string; value: string }> {
  const stamps = join(dir, "cache", "stamps");
  const [name] = await readdir(stamps);
  return JSON.parse(await readFile(join(stamps, name ?? ""), "utf8")) as { identity: string; value: string };
}

describe("fileSha256", () => {
  it("hashes a file once and answers from its stamp while the file is unchanged", async () => {
    const path = join(dir, "image");
    await writeFile(path, "kernel one");
    expect(await fileSha256(path)).toBe(sha256("kernel one"));
    // A stamp that lies proves the second answer came from it, not from reading the file.
    const stamp = await stampOf();
    const stamps = join(dir, "cache", "stamps");
    const [name] = await readdir(stamps);
    await writeFile(join(stamps, name ?? ""), JSON.stringify({ ...stamp, path, value: "from-stamp" }));
    expect(await fileSha256(path)).toBe("from-stamp");
  });

  it("hashes again after any change, even one that keeps the size and the mtime", async () => {
    const path = join(dir, "image");
    await writeFile(path, "kernel two");
    expect(await fileSha256(path)).toBe(sha256("kernel two"));
    // Same length, mtime put back by hand: ctime still moves, so the stamp no longer matches.
    const before = (await stampOf()).identity;
    await writeFile(path, "kernel 2!!");
    const mtime = Number(before.split(":")[3]) / 1e9;
    await utimes(path, mtime, mtime);
    expect(await fileSha256(path)).toBe(sha256("kernel 2!!"));
  });

  it("ignores a torn stamp", async () => {
    const path = join(dir, "image");
    const stamps = join(dir, "cache", "stamps");
    const [name] = await readdir(stamps);
    await writeFile(join(stamps, name ?? ""), "{ torn");
    expect(await fileSha256(path)).toBe(sha256("kernel 2!!"));
  });
});
