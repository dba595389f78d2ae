// cpio "newc" (SVR4 without CRC), the format the kernel unpacks as initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst). The writer is deterministic:
// entries in call order, parents first, inode numbers 1.., uid/gid 0, one fixed mtime, so the
// same calls give the same bytes and initrd caches can key on them.
import { posix } from "node:path";
import { DecodeError } from "../errors.js";

const MAGIC = "070701";
/** The "crc" variant differs only in its magic and a checksum field, which readers may ignore. */
const MAGIC_CRC = "070702";
const HEADER_SIZE = 110;
const TRAILER = "TRAILER!!!";
const MAX_U32 = 0xffff_ffff;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

export type CpioEntry =
  | { readonly kind: "dir"; readonly path: string; readonly mode: number }
  | { readonly kind: "file"; readonly path: string; readonly mode: number; readonly data: Uint8Array }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string }
  | {
      readonly kind: "device";
      readonly path: string;
      readonly type: "c" | "b";
      readonly major: number;
      readonly minor: number;
      readonly mode: number;
    };

export interface CpioWriterOptions {
  /** mtime of every entry, seconds since the epoch (default 0). */
  readonly mtime?: number;
  /** Permissions of directories created implicitly as parents (default 0o755). */
  readonly parentMode?: number;
}

/** Archive-relative path: no leading "/" or "./", no "." or ".." segments, no trailing "/". */
export function normaliseCpioPath(path: string): string {
  const p = posix.normalize(path.replace(/^\/+/, ""));
  const clean = p.replace(/\/+$/, "");
  if (clean === "" || clean === "." || clean === ".." || clean.startsWith("../"))
    throw new Error(`cpio: path "${path}" is not inside the archive`);
  return clean;
}

function checkPerm(mode: number, path: string): number {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
    throw new Error(`cpio: mode 0o${mode.toString(8)} for "${path}" is not a permission mask`);
  return mode;
}

function checkU32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32)
    throw new Error(`cpio: ${what} ${value} does not fit the newc header`);
  return value;
}

export class CpioWriter {
  private readonly mtime: number;
  private readonly parentMode: number;
  /** Insertion-ordered; implicit parents are placeholders an explicit dir() may refine. */
  private readonly entries = new Map<string, { entry: CpioEntry; implicit: boolean }>();

  constructor(opts: CpioWriterOptions = {}) {
    this.mtime = checkU32(opts.mtime ?? 0, "mtime");
    this.parentMode = checkPerm(opts.parentMode ?? 0o755, "(parents)");
  }

  dir(path: string, mode = 0o755): this {
    const p = normaliseCpioPath(path);
    const existing = this.entries.get(p);
    if (existing?.implicit && existing.entry.kind === "dir") {
      // keep its place (before its children), take the explicit mode
      existing.entry = { kind: "dir", path: p, mode: checkPerm(mode, p) };
      existing.implicit = false;
      return this;
    }
    return this.add({ kind: "dir", path: p, mode: checkPerm(mode, p) });
  }

  file(path: string, data: Uint8Array | string, mode = 0o644): this {
    const p = normaliseCpioPath(path);
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    checkU32(bytes.length, `size of "${p}"`);
    return this.add({ kind: "file", path: p, mode: checkPerm(mode, p), data: bytes });
  }

  symlink(path: string, target: string): this {
    const p = normaliseCpioPath(path);
    if (target === "") throw new Error(`cpio: symlink "${p}" has an empty target`);
    return this.add({ kind: "symlink", path: p, target });
  }

  device(path: string, type: "c" | "b", major: number, minor: number, mode = 0o600): this {
    const p = normaliseCpioPath(path);
    checkU32(major, "major");
    checkU32(minor, "minor");
    return this.add({ kind: "device", path: p, type, major, minor, mode: checkPerm(mode, p) });
  }

  /** The entries as they will be written, parents included. */
  list(): CpioEntry[] {
    return [...this.entries.values()].map((e) => e.entry);
  }

  /** The archive bytes. The writer stays usable; calling again gives the same bytes. */
  finish(): Uint8Array {
    const parts: Uint8Array[] = [];
    let ino = 1;
    for (const { entry } of this.entries.values()) parts.push(...encodeEntry(entry, ino++, this.mtime));
    parts.push(
      ...encodeRecord(TRAILER, { ino: 0, mode: 0, nlink: 1, mtime: 0, rdev: [0, 0] }, new Uint8Array()),
    );
    return concat(parts);
  }

  private add(entry: CpioEntry): this {
    if (this.entries.has(entry.path)) throw new Error(`cpio: "${entry.path}" is already in the archive`);
    const parts = entry.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const seen = this.entries.get(parent);
      if (seen && seen.entry.kind !== "dir")
        throw new Error(`cpio: parent "${parent}" of "${entry.path}" is not a directory`);
      if (!seen)
        this.entries.set(parent, {
          entry: { kind: "dir", path: parent, mode: this.parentMode },
          implicit: true,
        });
    }
    this.entries.set(entry.path, { entry, implicit: false });
    return this;
  }
}

interface HeaderFields {
  ino: number;
  mode: number;
  nlink: number;
  mtime: number;
  rdev: [number, number];
}

function encodeEntry(e: CpioEntry, ino: number, mtime: number): Uint8Array[] {
  const base = { ino, mtime, rdev: [0, 0] as [number, number] };
  switch (e.kind) {
    case "dir":
      return encodeRecord(e.path, { ...base, mode: S_IFDIR | e.mode, nlink: 2 }, new Uint8Array());
    case "file":
      return encodeRecord(e.path, { ...base, mode: S_IFREG | e.mode, nlink: 1 }, e.data);
    case "symlink":
      return encodeRecord(
        e.path,
        { ...base, mode: S_IFLNK | 0o777, nlink: 1 },
        new TextEncoder().encode(e.target),
      );
    case "device": {
      const mode = (e.type === "c" ? S_IFCHR : S_IFBLK) | e.mode;
      return encodeRecord(e.path, { ...base, mode, nlink: 1, rdev: [e.major, e.minor] }, new Uint8Array());
    }
  }
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

function encodeRecord(name: string, f: HeaderFields, data: Uint8Array): Uint8Array[] {
  const nameBytes = new TextEncoder().encode(name + "\0");
  const fields = [
    f.ino,
    f.mode,
    0,
    0,
    f.nlink,
    f.mtime,
    data.length,
    0,
    0,
    f.rdev[0],
    f.rdev[1],
    nameBytes.length,
    0,
  ];
  const header = MAGIC + fields.map((v) => v.toString(16).padStart(8, "0")).join("");
  // header + name are padded together to 4 bytes, then the data is padded on its own
  return [
    new TextEncoder().encode(header),
    nameBytes,
    new Uint8Array(pad4(HEADER_SIZE + nameBytes.length)),
    data,
    new Uint8Array(pad4(data.length)),
  ];
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---- reader (tests and inspection) ----

export interface CpioRecord {
  readonly name: string;
  readonly ino: number;
  /** Full st_mode: type bits and permissions. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly nlink: number;
  readonly mtime: number;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly data: Uint8Array;
  /** Byte offset of the record's header in the input. */
  readonly offset: number;
}

export type CpioKind = "dir" | "file" | "symlink" | "char" | "block" | "other";

export function cpioKind(mode: number): CpioKind {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return "dir";
    case S_IFREG:
      return "file";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "char";
    case S_IFBLK:
      return "block";
    default:
      return "other";
  }
}

/**
 * Every record up to the trailer. Like the kernel, it accepts several archives back to back
 * (zero padding between them is skipped). Throws DecodeError on anything malformed.
 */
export function readCpio(input: Uint8Array): CpioRecord[] {
  const out: CpioRecord[] = [];
  const text = new TextDecoder("latin1");
  let at = 0;
  let sawTrailer = false;
  for (;;) {
    if (sawTrailer) {
      while (at < input.length && input[at] === 0) at++;
      if (at >= input.length) return out;
      sawTrailer = false;
    }
    if (at >= input.length) throw new DecodeError("cpio", at, `no ${TRAILER} record`);
    if (at + HEADER_SIZE > input.length) throw new DecodeError("cpio", at, "truncated header");
    const header = text.decode(input.subarray(at, at + HEADER_SIZE));
    const magic = header.slice(0, 6);
    if (magic !== MAGIC && magic !== MAGIC_CRC) throw new DecodeError("cpio", at, `bad magic "${magic}"`);
    const field = (i: number): number => {
      const hex = header.slice(6 + 8 * i, 14 + 8 * i);
      if (!/^[0-9a-fA-F]{8}$/.test(hex))
        throw new DecodeError("cpio", at + 6 + 8 * i, `bad hex field "${hex}"`);
      return parseInt(hex, 16);
    };
    const size = field(6);
    const nameSize = field(11);
    if (nameSize === 0) throw new DecodeError("cpio", at + 94, "empty name");
    const nameStart = at + HEADER_SIZE;
    const dataStart = nameStart + nameSize + pad4(HEADER_SIZE + nameSize);
    if (nameStart + nameSize > input.length) throw new DecodeError("cpio", nameStart, "truncated name");
    if (input[nameStart + nameSize - 1] !== 0)
      throw new DecodeError("cpio", nameStart, "name is not NUL-terminated");
    const name = new TextDecoder().decode(input.subarray(nameStart, nameStart + nameSize - 1));
    if (dataStart + size > input.length)
      throw new DecodeError("cpio", dataStart, `truncated data of "${name}"`);
    const record: CpioRecord = {
      name,
      ino: field(0),
      mode: field(1),
      uid: field(2),
      gid: field(3),
      nlink: field(4),
      mtime: field(5),
      devMajor: field(7),
      devMinor: field(8),
      rdevMajor: field(9),
      rdevMinor: field(10),
      data: input.slice(dataStart, dataStart + size),
      offset: at,
    };
    at = Math.min(dataStart + size + pad4(size), input.length);
    if (name === TRAILER) sawTrailer = true;
    else out.push(record);
  }
}
