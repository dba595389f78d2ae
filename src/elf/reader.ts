// A small ELF64 little-endian reader for guest memory dumps (QEMU dump-guest-memory, /proc/vmcore
// copies). Dumps are as large as guest RAM, so it reads through a random-access source and never loads
// the whole file: the header, the program headers and the notes are read once, page contents on demand.
// Physical addresses map through PT_LOAD p_paddr, which is what dump-guest-memory fills in.

import { open, type FileHandle } from "node:fs/promises";
import { DecodeError } from "../errors.js";

export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const ET_CORE = 4;
/** x86_64 and aarch64: the only machines the harness boots. */
export const ELF_MACHINES: Readonly<Record<number, string>> = { 62: "x86_64", 183: "aarch64" };

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
/** e_phnum value meaning "the real count is in section header 0's sh_info" (many-segment vmcores). */
const PN_XNUM = 0xffff;
/** Notes are small (CPU registers, VMCOREINFO); refuse to slurp a bogus multi-gigabyte PT_NOTE. */
const MAX_NOTE_SEGMENT = 64 << 20;

/** Anything that can read bytes at an offset: a FileHandle, or memory in tests. */
export interface RandomAccessSource {
  readonly size: number;
  /** Reads exactly `length` bytes at `offset`, or fewer only at end of file. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

export interface ElfHeader {
  readonly type: number;
  readonly machine: number;
  readonly entry: bigint;
  readonly phoff: number;
  readonly shoff: number;
  readonly flags: number;
  /** Not checked: QEMU's dump-guest-memory writes 8 here instead of 64. */
  readonly ehsize: number;
  readonly phnum: number;
}

export interface ElfProgramHeader {
  readonly index: number;
  readonly type: number;
  readonly flags: number;
  readonly offset: number;
  readonly vaddr: bigint;
  readonly paddr: bigint;
  readonly filesz: bigint;
  readonly memsz: bigint;
  readonly align: bigint;
}

export interface ElfNote {
  readonly name: string;
  readonly type: number;
  readonly desc: Uint8Array;
  /** File offset of the note header. */
  readonly offset: number;
}

function fail(offset: number, reason: string): never {
  throw new DecodeError("elf", offset, reason);
}

/** A physical address the dump does not cover (not RAM, or not dumped). */
export class UnmappedPhysError extends DecodeError {
  override readonly name: string = "UnmappedPhysError";
  constructor(readonly paddr: bigint) {
    super("elf", 0, `physical address 0x${paddr.toString(16)} is not in any PT_LOAD segment of the dump`);
  }
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

function safeNumber(value: bigint, at: number, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(at, `${what} ${hex(value)} is beyond any file`);
  return Number(value);
}

/** Wrap a FileHandle as a source; `size` from fstat. */
export async function fileSource(handle: FileHandle): Promise<RandomAccessSource> {
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length) {
      const buf = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await handle.read(buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return new Uint8Array(buf.buffer, buf.byteOffset, done);
    },
  };
}

export function bufferSource(bytes: Uint8Array): RandomAccessSource {
  return {
    size: bytes.length,
    read: (offset, length) => Promise.resolve(bytes.slice(offset, offset + length)),
  };
}

export class ElfReader {
  private constructor(
    private readonly source: RandomAccessSource,
    readonly header: ElfHeader,
    readonly programHeaders: readonly ElfProgramHeader[],
    private readonly loads: readonly ElfProgramHeader[],
    private readonly closeFn: () => Promise<void>,
  ) {}

  /** Open a dump file; call close() when done. */
  static async open(path: string): Promise<ElfReader> {
    const handle = await open(path, "r");
    try {
      return await ElfReader.fromSource(await fileSource(handle), () => handle.close());
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  static async fromSource(
    source: RandomAccessSource,
    closeFn: () => Promise<void> = () => Promise.resolve(),
  ): Promise<ElfReader> {
    const ehdr = await readExact(source, 0, EHDR_SIZE, "ELF header");
    const header = parseHeader(ehdr);
    let phnum = header.phnum;
    if (phnum === PN_XNUM) {
      const shoff = header.shoff;
      if (shoff === 0) fail(56, "e_phnum is PN_XNUM but there is no section header 0");
      const shdr = await readExact(source, shoff, SHDR_SIZE, "section header 0");
      phnum = view(shdr).getUint32(44, true); // sh_info
    }
    const phBytes = await readExact(source, header.phoff, phnum * PHDR_SIZE, "program headers");
    const programHeaders = Array.from({ length: phnum }, (_, i) =>
      parseProgramHeader(phBytes, i, header.phoff + i * PHDR_SIZE),
    );
    for (const ph of programHeaders) {
      const at = header.phoff + ph.index * PHDR_SIZE;
      if (ph.type !== PT_LOAD && ph.type !== PT_NOTE) continue;
      if (ph.filesz > ph.memsz && ph.type === PT_LOAD) {
        fail(at + 32, `PT_LOAD ${ph.index}: p_filesz ${hex(ph.filesz)} > p_memsz ${hex(ph.memsz)}`);
      }
      if (BigInt(ph.offset) + ph.filesz > BigInt(source.size)) {
        fail(
          at + 8,
          `segment ${ph.index} (${hex(ph.offset)}+${hex(ph.filesz)}) runs past end of file (truncated dump?)`,
        );
      }
      if (ph.type === PT_LOAD && ph.paddr + ph.memsz > 1n << 64n) {
        fail(at + 24, `PT_LOAD ${ph.index}: physical range wraps past 2^64`);
      }
    }
    const loads = programHeaders
      .filter((ph) => ph.type === PT_LOAD && ph.memsz > 0n)
      .sort((a, b) => (a.paddr < b.paddr ? -1 : a.paddr > b.paddr ? 1 : 0));
    return new ElfReader(source, { ...header, phnum }, programHeaders, loads, closeFn);
  }

  close(): Promise<void> {
    return this.closeFn();
  }

  /** Every note in every PT_NOTE segment, in file order. */
  async notes(): Promise<ElfNote[]> {
    const out: ElfNote[] = [];
    for (const ph of this.programHeaders) {
      if (ph.type !== PT_NOTE) continue;
      const size = Number(ph.filesz);
      if (size > MAX_NOTE_SEGMENT)
        fail(ph.offset, `PT_NOTE ${ph.index} is ${size} bytes, too large for notes`);
      const bytes = await readExact(this.source, ph.offset, size, `PT_NOTE ${ph.index}`);
      out.push(...parseNotes(bytes, ph.offset, ph.align === 8n ? 8 : 4));
    }
    return out;
  }

  /** The PT_LOAD ranges, sorted by physical address: what a caller may treat as RAM. */
  physRanges(): { start: bigint; end: bigint }[] {
    return this.loads.map((ph) => ({ start: ph.paddr, end: ph.paddr + ph.memsz }));
  }

  /** File offset of a physical address, or undefined if no PT_LOAD holds its bytes in the file. */
  physToFileOffset(paddr: bigint): number | undefined {
    const ph = this.segmentFor(paddr);
    if (!ph || paddr - ph.paddr >= ph.filesz) return undefined;
    return ph.offset + Number(paddr - ph.paddr);
  }

  /** True if the address lies in some PT_LOAD (including its zero-filled tail). */
  isMapped(paddr: bigint): boolean {
    return this.segmentFor(paddr) !== undefined;
  }

  /**
   * Read guest-physical memory. May span adjacent segments; bytes past p_filesz inside p_memsz
   * read as zero (ELF semantics). An address no segment covers is a DecodeError.
   */
  async readPhys(paddr: bigint, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const addr = paddr + BigInt(done);
      const ph = this.segmentFor(addr);
      if (!ph) throw new UnmappedPhysError(addr);
      const into = addr - ph.paddr;
      const take = Number(min(BigInt(length - done), ph.memsz - into));
      const fromFile = Number(min(BigInt(take), ph.filesz > into ? ph.filesz - into : 0n));
      if (fromFile > 0) {
        const bytes = await readExact(this.source, ph.offset + Number(into), fromFile, `PT_LOAD ${ph.index}`);
        out.set(bytes, done);
      }
      done += take;
    }
    return out;
  }

  private segmentFor(paddr: bigint): ElfProgramHeader | undefined {
    // Binary search over sorted, normally few (QEMU: one per RAM block) segments.
    let lo = 0;
    let hi = this.loads.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const ph = this.loads[mid];
      if (!ph) break;
      if (paddr < ph.paddr) hi = mid - 1;
      else if (paddr >= ph.paddr + ph.memsz) lo = mid + 1;
      else return ph;
    }
    return undefined;
  }
}

const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

async function readExact(
  source: RandomAccessSource,
  offset: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  if (offset + length > source.size) {
    fail(offset, `${what} (${length} bytes) runs past end of the ${source.size}-byte file`);
  }
  const bytes = await source.read(offset, length);
  if (bytes.length !== length) fail(offset, `short read of ${what}: ${bytes.length} of ${length} bytes`);
  return bytes;
}

function parseHeader(b: Uint8Array): ElfHeader {
  if (b[0] !== 0x7f || b[1] !== 0x45 || b[2] !== 0x4c || b[3] !== 0x46)
    fail(0, "not an ELF file (bad magic)");
  if (b[4] !== 2) fail(4, `EI_CLASS ${b[4]} is not ELFCLASS64`);
  if (b[5] !== 1) fail(5, `EI_DATA ${b[5]} is not little-endian (only x86_64 and aarch64 dumps are read)`);
  if (b[6] !== 1) fail(6, `EI_VERSION ${b[6]} is not 1`);
  const v = view(b);
  const machine = v.getUint16(18, true);
  if (!(machine in ELF_MACHINES)) fail(18, `e_machine ${machine} is neither x86_64 (62) nor aarch64 (183)`);
  const phoff = safeNumber(v.getBigUint64(32, true), 32, "e_phoff");
  const phnum = v.getUint16(56, true);
  const phentsize = v.getUint16(54, true);
  if (phnum > 0 && phentsize !== PHDR_SIZE) fail(54, `e_phentsize ${phentsize} is not ${PHDR_SIZE}`);
  if (phnum > 0 && phoff === 0) fail(32, "e_phoff is 0 but e_phnum is not");
  return {
    type: v.getUint16(16, true),
    machine,
    entry: v.getBigUint64(24, true),
    phoff,
    shoff: safeNumber(v.getBigUint64(40, true), 40, "e_shoff"),
    flags: v.getUint32(48, true),
    ehsize: v.getUint16(52, true),
    phnum,
  };
}

function parseProgramHeader(bytes: Uint8Array, index: number, fileOffset: number): ElfProgramHeader {
  const v = new DataView(bytes.buffer, bytes.byteOffset + index * PHDR_SIZE, PHDR_SIZE);
  return {
    index,
    type: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    offset: safeNumber(v.getBigUint64(8, true), fileOffset + 8, "p_offset"),
    vaddr: v.getBigUint64(16, true),
    paddr: v.getBigUint64(24, true),
    filesz: v.getBigUint64(32, true),
    memsz: v.getBigUint64(40, true),
    align: v.getBigUint64(48, true),
  };
}

const latin1 = new TextDecoder("latin1");

/** Elf64_Nhdr {namesz, descsz, type}; name and desc each padded to `align`. */
export function parseNotes(bytes: Uint8Array, baseOffset: number, align: number): ElfNote[] {
  const out: ElfNote[] = [];
  const v = view(bytes);
  const pad = (n: number): number => Math.ceil(n / align) * align;
  let off = 0;
  while (off + 12 <= bytes.length) {
    const namesz = v.getUint32(off, true);
    const descsz = v.getUint32(off + 4, true);
    const type = v.getUint32(off + 8, true);
    const nameStart = off + 12;
    const descStart = nameStart + pad(namesz);
    const end = descStart + pad(descsz);
    // Kernel vmcores end the segment with zero padding: an all-zero header means "no more notes".
    if (namesz === 0 && descsz === 0 && type === 0) break;
    if (descStart + descsz > bytes.length) {
      fail(baseOffset + off, `note (namesz ${namesz}, descsz ${descsz}) runs past its PT_NOTE segment`);
    }
    let name = latin1.decode(bytes.subarray(nameStart, nameStart + namesz));
    if (name.endsWith("\0")) name = name.slice(0, -1);
    out.push({ name, type, desc: bytes.slice(descStart, descStart + descsz), offset: baseOffset + off });
    off = end;
  }
  return out;
}
