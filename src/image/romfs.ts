// A romfs image (Documentation/filesystems/romfs.rst, fs/romfs/super.c) written from a
// directory tree: the read-only disk the guest mounts at /boot. romfs is two small objects in
// the kernel where ext4 and its journal are forty, and this writer needs no host tool.
//
// Layout: the superblock ("-rom1fs-", image size, checksum of the first 512 bytes, volume
// name), then one header per entry, each 16-byte aligned: next header's offset | exec bit |
// type, spec (a directory's first entry), size, checksum of the header and its name, the name,
// then the data (a file's bytes, a symlink's target). A directory's entries follow it; the
// kernel reaches them through `spec` and each entry's `next`, not through adjacency.
// Everything is owned by root; files are 0644, or 0755 when any execute bit is set.
import { open, readdir, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { HarnessError } from "../errors.js";

const HEADER = 16;
const MAX_NAME = 128; // ROMFS_MAXFN, the kernel reads at most this many bytes of a name
const TYPE_DIR = 1;
const TYPE_REG = 2;
const TYPE_SYM = 3;
const EXEC = 8;

/** `offset` is where the entry's header goes, `next` its following sibling's (0: the last). */
type Entry = { name: string; offset: number; next: number } & (
  | { kind: "dir"; children: Entry[] }
  | { kind: "file"; path: string; size: number; exec: boolean }
  | { kind: "symlink"; target: Buffer }
);

const pad16 = (n: number) => (n + 15) & ~15;
const nameBytes = (name: string) => pad16(Buffer.byteLength(name) + 1);
const dataSize = (e: Entry) => (e.kind === "file" ? e.size : e.kind === "symlink" ? e.target.length : 0);

async function scan(dir: string, name: string): Promise<Entry> {
  const children: Entry[] = [];
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const d of entries) {
    const path = join(dir, d.name);
    if (Buffer.byteLength(d.name) >= MAX_NAME)
      throw new HarnessError(`romfs: the name ${path} is longer than ${MAX_NAME - 1} bytes`);
    if (d.isDirectory()) children.push(await scan(path, d.name));
    else if (d.isSymbolicLink())
      children.push({
        kind: "symlink",
        name: d.name,
        target: Buffer.from(await readlink(path)),
        offset: 0,
        next: 0,
      });
    else if (d.isFile()) {
      const s = await stat(path);
      children.push({
        kind: "file",
        name: d.name,
        path,
        size: s.size,
        exec: (s.mode & 0o111) !== 0,
        offset: 0,
        next: 0,
      });
    } else throw new HarnessError(`romfs: ${path} is not a file, directory or symlink`);
  }
  return { kind: "dir", name, children, offset: 0, next: 0 };
}

/** Offsets in writing order: each entry, then (for a directory) its entries; each entry's
 *  `next` is its following sibling's offset. */
function place(e: Entry, at: number, order: Entry[]): number {
  e.offset = at;
  order.push(e);
  let end = at + HEADER + nameBytes(e.name) + pad16(dataSize(e));
  if (e.kind === "dir") {
    for (const c of e.children) end = place(c, end, order);
    e.children.forEach((c, i) => (c.next = e.children[i + 1]?.offset ?? 0));
  }
  return end;
}

/** The value that makes the big-endian 32-bit words of `buf` sum to zero (mod 2^32). */
function balance(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 4 <= buf.length; i += 4) sum = (sum + buf.readUInt32BE(i)) >>> 0;
  return (0x1_0000_0000 - sum) >>> 0;
}

function header(e: Entry): Buffer {
  const buf = Buffer.alloc(HEADER + nameBytes(e.name));
  const type =
    e.kind === "dir" ? TYPE_DIR | EXEC : e.kind === "file" ? TYPE_REG | (e.exec ? EXEC : 0) : TYPE_SYM;
  buf.writeUInt32BE((e.next | type) >>> 0, 0);
  buf.writeUInt32BE(e.kind === "dir" ? (e.children[0]?.offset ?? 0) : 0, 4);
  buf.writeUInt32BE(dataSize(e), 8);
  buf.write(e.name, HEADER);
  buf.writeUInt32BE(balance(buf), 12);
  return buf;
}

/** The image size is padded to this (a block device is read in blocks of it). */
const IMAGE_ALIGN = 4096;

/**
 * Writes `dir`'s tree as a romfs image to `dest`. Returns the image's size. Regular files,
 * directories and symlinks only; a file of 4 GiB or more does not fit romfs's 32-bit sizes.
 */
export async function writeRomfs(dir: string, dest: string, volume: string): Promise<number> {
  const root = await scan(dir, ".");
  const volName = nameBytes(volume);
  const order: Entry[] = [];
  const end = place(root, HEADER + volName, order);
  const size = pad16(end);
  if (size >= 0x1_0000_0000)
    throw new HarnessError(`romfs: the tree under ${dir} is ${size} bytes, over 4 GiB`);
  const image = Math.ceil(size / IMAGE_ALIGN) * IMAGE_ALIGN;
  const fh = await open(dest, "w");
  try {
    // The first 512 bytes carry the superblock's checksum, which covers the headers in them.
    const first = Buffer.alloc(Math.min(512, image));
    const write = async (buf: Buffer, at: number) => {
      await fh.write(buf, 0, buf.length, at);
      if (at < first.length) buf.copy(first, at, 0, Math.min(buf.length, first.length - at));
    };
    const sb = Buffer.alloc(HEADER + volName);
    sb.write("-rom1fs-", 0, "latin1");
    sb.writeUInt32BE(size, 8);
    sb.write(volume, HEADER);
    await write(sb, 0);
    for (const e of order) {
      const h = header(e);
      await write(h, e.offset);
      const data = e.offset + h.length;
      if (e.kind === "symlink") await write(e.target, data);
      else if (e.kind === "file") await copyInto(e.path, data, e.size, write);
    }
    // The checksum covers min(size, 512) bytes: the copy of them kept while writing.
    const sum = balance(first.subarray(0, Math.min(size, 512)));
    const word = Buffer.alloc(4);
    word.writeUInt32BE(sum, 0);
    await fh.write(word, 0, 4, 12);
    await fh.truncate(image);
  } finally {
    await fh.close();
  }
  return image;
}

async function copyInto(
  path: string,
  at: number,
  size: number,
  write: (buf: Buffer, at: number) => Promise<void>,
): Promise<void> {
  const src = await open(path, "r");
  try {
    const chunk = Buffer.alloc(1 << 20);
    for (let done = 0; done < size;) {
      const { bytesRead } = await src.read(chunk, 0, Math.min(chunk.length, size - done), done);
      if (bytesRead === 0) throw new HarnessError(`romfs: ${path} shrank while it was copied`);
      await write(chunk.subarray(0, bytesRead), at + done);
      done += bytesRead;
    }
  } finally {
    await src.close();
  }
}
