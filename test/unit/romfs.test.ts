// The romfs writer against the format as fs/romfs/super.c reads it: the superblock's magic,
// size and checksum of the first 512 bytes, each header's checksum, a directory's entries
// reached through spec and next, file and symlink data after the padded name. The reader below
// walks the image the way the kernel's romfs_lookup/romfs_readdir do; the guest mounting the
// disk in every end-to-end run is the other half of the proof.
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { HarnessError } from "../../src/errors.js";
import { writeRomfs } from "../../src/image/romfs.js";

const dir = mkdtempSync(join(tmpdir(), "kho-romfs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sum32 = (b: Buffer) => {
  let s = 0;
  for (let i = 0; i + 4 <= b.length; i += 4) s = (s + b.readUInt32BE(i)) >>> 0;
  return s;
};

type Node =
  | { type: "dir"; exec: boolean; entries: Map<string, Node> }
  | { type: "file"; exec: boolean; data: Buffer }
  | { type: "symlink"; target: string };

/** Reads a romfs image as the kernel does; throws on anything the kernel would refuse. */
function readRomfs(img: Buffer): { volume: string; size: number; root: Node } {
  expect(img.subarray(0, 8).toString("latin1")).toBe("-rom1fs-");
  const size = img.readUInt32BE(8);
  expect(size).toBeLessThanOrEqual(img.length);
  expect(sum32(img.subarray(0, Math.min(size, 512)))).toBe(0);
  const nameAt = (at: number) => {
    const end = img.indexOf(0, at);
    return { name: img.subarray(at, end).toString(), meta: (end - at + 1 + 15) & ~15 };
  };
  const vol = nameAt(16);
  const node = (at: number): Node => {
    const next = img.readUInt32BE(at);
    const spec = img.readUInt32BE(at + 4);
    const len = img.readUInt32BE(at + 8);
    const { meta } = nameAt(at + 16);
    expect(sum32(img.subarray(at, at + 16 + meta)), `header checksum at ${at}`).toBe(0);
    const data = img.subarray(at + 16 + meta, at + 16 + meta + len);
    const exec = (next & 8) !== 0;
    switch (next & 7) {
      case 1: {
        const entries = new Map<string, Node>();
        for (let e = spec & ~15; e !== 0; e = img.readUInt32BE(e) & ~15) {
          expect(e).toBeLessThan(size);
          entries.set(nameAt(e + 16).name, node(e));
        }
        return { type: "dir", exec, entries };
      }
      case 2:
        return { type: "file", exec, data: Buffer.from(data) };
      case 3:
        return { type: "symlink", target: data.toString() };
      default:
        throw new Error(`unexpected romfs type ${next & 7} at ${at}`);
    }
  };
  return { volume: vol.name, size, root: node(16 + vol.meta) };
}

function file(root: Node, path: string): Node {
  let n = root;
  for (const part of path.split("/")) {
    if (n.type !== "dir") throw new Error(`${path}: ${part} is under a non-directory`);
    const next = n.entries.get(part);
    if (!next) throw new Error(`${path}: no ${part}`);
    n = next;
  }
  return n;
}

describe("writeRomfs", () => {
  it("writes every file, directory and symlink of the tree as the kernel reads them", async () => {
    const tree = join(dir, "tree");
    mkdirSync(join(tree, "usr/lib/deep/er"), { recursive: true });
    mkdirSync(join(tree, "empty"));
    // Odd sizes and one over the 1 MiB copy chunk: a cut or rounded file shows.
    const kernel = randomBytes(3 * 1048576 + 123);
    writeFileSync(join(tree, "next-kernel"), kernel);
    writeFileSync(join(tree, "usr/lib/deep/er/libx.so.1"), "a library");
    writeFileSync(join(tree, "usr/lib/empty-file"), "");
    writeFileSync(join(tree, "usr/busybox"), randomBytes(4097));
    chmodSync(join(tree, "usr/busybox"), 0o700);
    symlinkSync("deep/er/libx.so.1", join(tree, "usr/lib/libx.so"));
    symlinkSync("/usr/busybox", join(tree, "usr/sh"));
    const img = join(dir, "disk.romfs");
    const size = await writeRomfs(tree, img, "kho-next");
    const bytes = readFileSync(img);
    expect(bytes.length).toBe(size);
    expect(size % 4096).toBe(0);
    const fs = readRomfs(bytes);
    expect(fs.volume).toBe("kho-next");
    const root = fs.root;
    expect(root.type).toBe("dir");
    if (root.type !== "dir") return;
    expect([...root.entries.keys()]).toEqual(["empty", "next-kernel", "usr"]);
    const k = file(root, "next-kernel");
    expect(k.type === "file" && k.data.equals(kernel)).toBe(true);
    expect(k.type === "file" && k.exec).toBe(false);
    const bb = file(root, "usr/busybox");
    expect(bb.type === "file" && bb.exec && bb.data.equals(readFileSync(join(tree, "usr/busybox")))).toBe(
      true,
    );
    expect(file(root, "usr/lib/deep/er/libx.so.1")).toEqual({
      type: "file",
      exec: false,
      data: Buffer.from("a library"),
    });
    expect(file(root, "usr/lib/empty-file")).toEqual({ type: "file", exec: false, data: Buffer.alloc(0) });
    expect(file(root, "usr/lib/libx.so")).toEqual({ type: "symlink", target: "deep/er/libx.so.1" });
    expect(file(root, "usr/sh")).toEqual({ type: "symlink", target: "/usr/busybox" });
    const empty = file(root, "empty");
    expect(empty.type === "dir" && empty.exec && empty.entries.size === 0).toBe(true);
  });

  it("gets the checksum right when the whole image is under 512 bytes", async () => {
    const tree = join(dir, "tiny");
    mkdirSync(tree);
    writeFileSync(join(tree, "a"), "x");
    const img = join(dir, "tiny.romfs");
    await writeRomfs(tree, img, "v");
    const bytes = readFileSync(img);
    expect(bytes.readUInt32BE(8)).toBeLessThan(512);
    const fs = readRomfs(bytes);
    expect(file(fs.root, "a")).toEqual({ type: "file", exec: false, data: Buffer.from("x") });
  });

  it("refuses what romfs cannot hold, naming the path", async () => {
    const long = join(dir, "long");
    mkdirSync(long);
    writeFileSync(join(long, "n".repeat(128)), "x");
    await expect(writeRomfs(long, join(dir, "long.romfs"), "v")).rejects.toThrow(
      new HarnessError(`romfs: the name ${join(long, "n".repeat(128))} is longer than 127 bytes`),
    );
    const fifo = join(dir, "fifo");
    mkdirSync(fifo);
    await execa("mkfifo", [join(fifo, "p")]);
    await expect(writeRomfs(fifo, join(dir, "fifo.romfs"), "v")).rejects.toThrow(
      /is not a file, directory or symlink/,
    );
    expect(statSync(join(fifo, "p")).isFIFO()).toBe(true);
  });
});
