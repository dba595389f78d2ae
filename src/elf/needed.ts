// DT_NEEDED of an ELF64 little-endian executable or shared object (x86_64 and aarch64, the
// guest's arches): the libraries the dynamic loader will open for it. The guest image keeps
// only the closure of what its programs need. Read through the program headers (PT_DYNAMIC,
// and PT_LOAD to turn DT_STRTAB's address into a file offset), every read bounds-checked: a
// malformed file is a DecodeError naming the offset, never another exception.
import { DecodeError } from "../errors.js";

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
/** More program headers or dynamic entries than any real binary has: a corrupt count. */
const MAX_PHDRS = 4096;
const MAX_DYN = 65536;

export interface DynamicInfo {
  /** Library names in DT_NEEDED order, e.g. ["libtomcrypt.so.1", "libc.so.6"]. */
  readonly needed: readonly string[];
  /** False for a static executable (no PT_DYNAMIC). */
  readonly dynamic: boolean;
}

export function readDynamic(bytes: Uint8Array): DynamicInfo {
  const fail = (offset: number | bigint, reason: string): never => {
    throw new DecodeError("elf", Number(offset), reason);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (offset: number | bigint, length: number, what: string): number => {
    const at = Number(offset);
    if (!Number.isSafeInteger(at) || at < 0 || at + length > bytes.length) {
      fail(offset, `${what} lies outside the ${bytes.length}-byte file`);
    }
    return at;
  };
  need(0, 64, "the ELF header");
  if (view.getUint32(0, false) !== 0x7f454c46) fail(0, "no ELF magic");
  if (bytes[4] !== 2 || bytes[5] !== 1) fail(4, "not a 64-bit little-endian ELF");
  const phoff = view.getBigUint64(32, true);
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  if (phnum > 0 && phentsize < 56) fail(54, `program header size ${phentsize} is below 56`);
  if (phnum > MAX_PHDRS) fail(56, `${phnum} program headers`);
  const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
  let dynamic: { offset: bigint; size: bigint } | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = need(phoff + BigInt(i * phentsize), 56, `program header ${i}`);
    const type = view.getUint32(at, true);
    const offset = view.getBigUint64(at + 8, true);
    const vaddr = view.getBigUint64(at + 16, true);
    const filesz = view.getBigUint64(at + 32, true);
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    if (type === PT_DYNAMIC) dynamic = { offset, size: filesz };
  }
  if (!dynamic) return { needed: [], dynamic: false };

  const entries = Number(dynamic.size / 16n);
  if (entries > MAX_DYN) fail(dynamic.offset, `PT_DYNAMIC of ${dynamic.size} bytes`);
  const neededAt: bigint[] = [];
  let strtab: bigint | undefined;
  let strsz: bigint | undefined;
  for (let i = 0; i < entries; i++) {
    const at = need(dynamic.offset + BigInt(i * 16), 16, `dynamic entry ${i}`);
    const tag = view.getBigInt64(at, true);
    const value = view.getBigUint64(at + 8, true);
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) neededAt.push(value);
    else if (tag === DT_STRTAB) strtab = value;
    else if (tag === DT_STRSZ) strsz = value;
  }
  if (neededAt.length === 0) return { needed: [], dynamic: true };
  if (strtab === undefined || strsz === undefined)
    fail(dynamic.offset, "DT_NEEDED without DT_STRTAB and DT_STRSZ");
  const address = strtab ?? 0n;
  const size = strsz ?? 0n;
  const segment = loads.find((l) => address >= l.vaddr && address + size <= l.vaddr + l.filesz);
  if (!segment) return fail(dynamic.offset, `DT_STRTAB 0x${address.toString(16)} is in no PT_LOAD segment`);
  const start = need(segment.offset + (address - segment.vaddr), Number(size), "the dynamic string table");
  const end = start + Number(size);
  const needed = neededAt.map((nameOffset) => {
    if (nameOffset >= size) fail(start, `DT_NEEDED name offset ${nameOffset} is past DT_STRSZ ${size}`);
    const from = start + Number(nameOffset);
    const nul = bytes.indexOf(0, from);
    if (nul < 0 || nul >= end) fail(from, "DT_NEEDED name is not NUL-terminated inside the string table");
    return new TextDecoder().decode(bytes.subarray(from, nul));
  });
  return { needed, dynamic: true };
}
