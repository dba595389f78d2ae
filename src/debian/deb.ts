// Reading Debian packages without dpkg: an `ar` archive whose data.tar.{xz,zst,gz} (or plain
// data.tar) holds the files (deb(5)). The data member is streamed from disk through the
// decompressor into tar-stream, so large packages never sit in memory whole.
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { posix } from "node:path";
import { PassThrough, Transform, type Readable, type TransformCallback } from "node:stream";
import { createGunzip } from "node:zlib";
import { Decompress as ZstdDecompress } from "fzstd";
import lzma from "lzma-native";
import { extract as tarExtract, type Header as TarHeader } from "tar-stream";
import { DecodeError } from "../errors.js";

// ---- ar ----

const AR_MAGIC = "!<arch>\n";
const AR_HEADER = 60;

export interface ArMember {
  readonly name: string;
  /** Offset of the member's data (after the header and any BSD long name). */
  readonly offset: number;
  readonly size: number;
  readonly mtime: number;
  readonly mode: number;
}

interface ArHeader {
  /** Name as stored: GNU "name/", BSD "#1/len", or plain. */
  readonly rawName: string;
  readonly size: number;
  readonly mtime: number;
  readonly mode: number;
}

function parseArHeader(h: Uint8Array, at: number): ArHeader {
  const text = new TextDecoder("latin1").decode(h);
  if (text.slice(58, 60) !== "`\n") throw new DecodeError("ar", at + 58, "bad header terminator");
  const num = (start: number, len: number, radix: number, what: string): number => {
    const s = text.slice(start, start + len).trim();
    const digits = radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
    if (s === "" && what !== "size") return 0;
    if (!digits.test(s)) throw new DecodeError("ar", at + start, `bad ${what} field "${s}"`);
    return parseInt(s, radix);
  };
  return {
    rawName: text.slice(0, 16).trimEnd(),
    mtime: num(16, 12, 10, "mtime"),
    mode: num(40, 8, 8, "mode"),
    size: num(48, 10, 10, "size"),
  };
}

/** The member's name and where its data starts (BSD "#1/N" stores the name in the data). */
function memberName(
  h: ArHeader,
  dataAt: number,
  readName: (at: number, n: number) => Uint8Array,
): [string, number] {
  const bsd = /^#1\/(\d+)$/.exec(h.rawName);
  if (bsd) {
    const n = Number(bsd[1]);
    if (n > h.size) throw new DecodeError("ar", dataAt, "BSD name longer than the member");
    const name = new TextDecoder().decode(readName(dataAt, n)).replace(/\0+$/, "");
    return [name, n];
  }
  // GNU terminates names with "/"; "/" and "//" themselves are the symbol and long-name tables
  const name = h.rawName === "/" || h.rawName === "//" ? h.rawName : h.rawName.replace(/\/$/, "");
  return [name, 0];
}

/** Every member of an in-memory ar archive. Throws DecodeError on anything malformed. */
export function readAr(data: Uint8Array): ArMember[] {
  if (new TextDecoder("latin1").decode(data.subarray(0, 8)) !== AR_MAGIC)
    throw new DecodeError("ar", 0, "not an ar archive (no !<arch> magic)");
  const members: ArMember[] = [];
  let at = 8;
  while (at < data.length) {
    if (at + AR_HEADER > data.length) throw new DecodeError("ar", at, "truncated member header");
    const h = parseArHeader(data.subarray(at, at + AR_HEADER), at);
    const dataAt = at + AR_HEADER;
    if (dataAt + h.size > data.length)
      throw new DecodeError("ar", dataAt, `member "${h.rawName}" runs past the end`);
    const [name, skip] = memberName(h, dataAt, (p, n) => data.subarray(p, p + n));
    members.push({ name, offset: dataAt + skip, size: h.size - skip, mtime: h.mtime, mode: h.mode });
    at = dataAt + h.size + (h.size % 2); // members are 2-byte aligned with a "\n" pad
  }
  return members;
}

/** The members of an ar file on disk, reading only the headers. */
export async function listArMembers(path: string): Promise<ArMember[]> {
  const fh = await open(path, "r");
  try {
    const { size: fileSize } = await fh.stat();
    const read = async (pos: number, n: number): Promise<Uint8Array> => {
      const buf = new Uint8Array(n);
      const { bytesRead } = await fh.read(buf, 0, n, pos);
      return buf.subarray(0, bytesRead);
    };
    if (new TextDecoder("latin1").decode(await read(0, 8)) !== AR_MAGIC)
      throw new DecodeError("ar", 0, "not an ar archive (no !<arch> magic)");
    const members: ArMember[] = [];
    let at = 8;
    while (at < fileSize) {
      const raw = await read(at, AR_HEADER);
      if (raw.length < AR_HEADER) throw new DecodeError("ar", at, "truncated member header");
      const h = parseArHeader(raw, at);
      const dataAt = at + AR_HEADER;
      if (dataAt + h.size > fileSize)
        throw new DecodeError("ar", dataAt, `member "${h.rawName}" runs past the end`);
      const bsdName = /^#1\/(\d+)$/.exec(h.rawName)
        ? await read(dataAt, Math.min(h.size, 4096))
        : new Uint8Array();
      const [name, skip] = memberName(h, dataAt, (_p, n) => bsdName.subarray(0, n));
      members.push({ name, offset: dataAt + skip, size: h.size - skip, mtime: h.mtime, mode: h.mode });
      at = dataAt + h.size + (h.size % 2);
    }
    return members;
  } finally {
    await fh.close();
  }
}

// ---- data.tar ----

export type DebEntryType = "file" | "symlink" | "dir" | "link";

export interface DebEntry {
  /** Normalised: no leading "./" or "/", no trailing "/" (e.g. "usr/bin/busybox"). */
  readonly path: string;
  readonly type: DebEntryType;
  /** Permission bits (0o7777). */
  readonly mode: number;
  readonly size: number;
  /** Symlink target as stored; for hard links, the normalised path of the other entry. */
  readonly linkname: string | null;
  /** Contents, for files (readDebEntries: always; extractFiles: the wanted ones). */
  readonly data?: Uint8Array;
}

const COMPRESSIONS = ["data.tar.xz", "data.tar.zst", "data.tar.gz", "data.tar"] as const;

/** Path inside the package, normalised. "" for the root directory entry. */
export function normaliseDebPath(name: string): string {
  const p = posix.normalize(name.replace(/^(\.\/|\/)+/, "")).replace(/\/+$/, "");
  return p === "." || p === "./" ? "" : p;
}

/** fzstd's streaming decoder as a Node Transform. */
function zstdStream(): Transform {
  let push: ((d: Uint8Array) => void) | undefined;
  const dec = new ZstdDecompress((chunk) => push?.(chunk));
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      push = (d) => this.push(d);
      try {
        dec.push(chunk);
        done();
      } catch (e) {
        done(e instanceof Error ? e : new Error(String(e)));
      }
    },
    flush(done: TransformCallback) {
      push = (d) => this.push(d);
      try {
        dec.push(new Uint8Array(), true);
        done();
      } catch (e) {
        done(e instanceof Error ? e : new Error(String(e)));
      }
    },
  });
}

function decompressor(member: string): Transform {
  if (member.endsWith(".xz")) return lzma.createDecompressor();
  if (member.endsWith(".zst")) return zstdStream();
  if (member.endsWith(".gz")) return createGunzip();
  return new PassThrough();
}

function entryType(t: TarHeader["type"] | undefined): DebEntryType | undefined {
  switch (t) {
    case "file":
    case "contiguous-file":
      return "file";
    case "directory":
      return "dir";
    case "symlink":
      return "symlink";
    case "link":
      return "link";
    default:
      return undefined; // devices and fifos do not occur in packages; skipped
  }
}

async function* entries(debPath: string, loadData: (path: string) => boolean): AsyncGenerator<DebEntry> {
  const members = await listArMembers(debPath);
  const member = COMPRESSIONS.map((n) => members.find((m) => m.name === n)).find((m) => m !== undefined);
  if (!member) {
    const names = members.map((m) => m.name).join(", ");
    throw new DecodeError("deb", 8, `no data.tar member (members: ${names || "none"})`);
  }
  if (member.size === 0) throw new DecodeError("deb", member.offset, `${member.name} is empty`);
  const fail = (e: unknown): DecodeError =>
    e instanceof DecodeError
      ? e
      : new DecodeError(
          "deb",
          member.offset,
          `${member.name}: ${e instanceof Error ? e.message : String(e)}`,
        );

  const source: Readable = createReadStream(debPath, {
    start: member.offset,
    end: member.offset + member.size - 1,
  });
  const unpack = decompressor(member.name);
  const extract = tarExtract();
  // errors anywhere in the chain surface through the iterator below
  const abort = (e: unknown) => extract.destroy(fail(e));
  source.on("error", abort);
  unpack.on("error", abort);
  source.pipe(unpack).pipe(extract);
  try {
    for await (const entry of extract) {
      const type = entryType(entry.header.type);
      const path = normaliseDebPath(entry.header.name);
      if (!type || path === "") {
        entry.resume();
        continue;
      }
      let data: Uint8Array | undefined;
      if (type === "file" && loadData(path)) {
        const chunks: Buffer[] = [];
        for await (const c of entry) chunks.push(c as Buffer); // streamx yields Buffers
        data = Buffer.concat(chunks);
      } else {
        entry.resume();
      }
      // typed string, but tar-stream gives null for entries without a link
      const link = (entry.header.linkname as string | null | undefined) || null;
      yield {
        path,
        type,
        mode: (entry.header.mode ?? 0) & 0o7777,
        size: entry.header.size ?? 0,
        linkname: link !== null && type === "link" ? normaliseDebPath(link) : link,
        ...(data ? { data } : {}),
      };
    }
  } catch (e) {
    throw fail(e);
  } finally {
    source.destroy();
    unpack.destroy();
  }
}

/** Every entry of the package's data.tar, files with their contents. The root "./" is skipped. */
export function readDebEntries(debPath: string): AsyncIterable<DebEntry> {
  return entries(debPath, () => true);
}

/** The entries whose path `wanted` accepts, by path; only their file contents are kept. */
export async function extractFiles(
  debPath: string,
  wanted: (path: string) => boolean,
): Promise<Map<string, DebEntry>> {
  const out = new Map<string, DebEntry>();
  for await (const e of entries(debPath, wanted)) if (wanted(e.path)) out.set(e.path, e);
  return out;
}
