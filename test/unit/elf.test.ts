import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { DecodeError } from "../../src/errors.js";
import {
  ElfReader,
  PT_LOAD,
  PT_NOTE,
  type RandomAccessSource,
  UnmappedPhysError,
  bufferSource,
} from "../../src/elf/reader.js";

interface Segment {
  paddr: bigint;
  data: Uint8Array;
  /** Defaults to data.length; larger means a zero-filled tail. */
  memsz?: number;
}

interface CoreSpec {
  machine?: number;
  segments: Segment[];
  notes?: { name: string; type: number; desc: Uint8Array }[];
  /** Store the program header count in section header 0 (PN_XNUM), as huge vmcores do. */
  xnum?: boolean;
}

const align4 = (n: number): number => (n + 3) & ~3;

/** A tiny ELF64 little-endian core file, laid out like QEMU's dump-guest-memory (e_ehsize 8 included). */
function buildCore(spec: CoreSpec): Uint8Array {
  const notes = spec.notes ?? [];
  const noteBytes = notes.reduce((n, x) => n + 12 + align4(x.name.length + 1) + align4(x.desc.length), 0);
  const phnum = spec.segments.length + (notes.length ? 1 : 0);
  const phoff = 64;
  const shoff = spec.xnum ? phoff + phnum * 56 : 0;
  let cursor = phoff + phnum * 56 + (spec.xnum ? 64 : 0);
  const noteOff = cursor;
  cursor += noteBytes;
  const segOffsets = spec.segments.map((s) => {
    const at = cursor;
    cursor += s.data.length;
    return at;
  });
  const out = new Uint8Array(cursor);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setUint16(16, 4, true); // ET_CORE
  v.setUint16(18, spec.machine ?? 62, true);
  v.setUint32(20, 1, true);
  v.setBigUint64(32, BigInt(phoff), true);
  v.setBigUint64(40, BigInt(shoff), true);
  v.setUint16(52, 8, true); // QEMU writes e_ehsize = 8
  v.setUint16(54, 56, true);
  v.setUint16(56, spec.xnum ? 0xffff : phnum, true);
  v.setUint16(58, spec.xnum ? 64 : 0, true);
  v.setUint16(60, spec.xnum ? 1 : 0, true);
  if (spec.xnum) v.setUint32(shoff + 44, phnum, true);
  let ph = phoff;
  if (notes.length) {
    v.setUint32(ph, PT_NOTE, true);
    v.setBigUint64(ph + 8, BigInt(noteOff), true);
    v.setBigUint64(ph + 32, BigInt(noteBytes), true);
    v.setBigUint64(ph + 40, BigInt(noteBytes), true);
    v.setBigUint64(ph + 48, 4n, true);
    ph += 56;
    let at = noteOff;
    for (const n of notes) {
      v.setUint32(at, n.name.length + 1, true);
      v.setUint32(at + 4, n.desc.length, true);
      v.setUint32(at + 8, n.type, true);
      out.set(new TextEncoder().encode(n.name), at + 12);
      at += 12 + align4(n.name.length + 1);
      out.set(n.desc, at);
      at += align4(n.desc.length);
    }
  }
  spec.segments.forEach((s, i) => {
    v.setUint32(ph, PT_LOAD, true);
    v.setUint32(ph + 4, 7, true);
    v.setBigUint64(ph + 8, BigInt(segOffsets[i] ?? 0), true);
    v.setBigUint64(ph + 16, 0xffff_8000_0000_0000n + s.paddr, true);
    v.setBigUint64(ph + 24, s.paddr, true);
    v.setBigUint64(ph + 32, BigInt(s.data.length), true);
    v.setBigUint64(ph + 40, BigInt(s.memsz ?? s.data.length), true);
    out.set(s.data, segOffsets[i] ?? 0);
    ph += 56;
  });
  return out;
}

const fill = (length: number, seed: number): Uint8Array =>
  Uint8Array.from({ length }, (_, i) => (i * 7 + seed) & 255);

const seg1 = fill(0x2000, 1); // [0x1000, 0x3000)
const seg2 = fill(0x1000, 2); // [0x3000, 0x4000) adjacent to seg1
const seg3 = fill(0x800, 3); // [0x100000, 0x101000): 0x800 bytes in the file, then zeros
const core = buildCore({
  segments: [
    { paddr: 0x100000n, data: seg3, memsz: 0x1000 },
    { paddr: 0x1000n, data: seg1 },
    { paddr: 0x3000n, data: seg2 },
  ],
  notes: [
    { name: "CORE", type: 1, desc: fill(336, 9) },
    { name: "VMCOREINFO", type: 0, desc: new TextEncoder().encode("OSRELEASE=7.2.13\n") },
  ],
});

async function expectDecodeError(promise: Promise<unknown>, reason: RegExp): Promise<DecodeError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DecodeError);
  expect((err as DecodeError).reason).toMatch(reason);
  return err as DecodeError;
}

describe("ELF64 core reader", () => {
  it("reads the header (ignoring QEMU's e_ehsize of 8), program headers and notes", async () => {
    const elf = await ElfReader.fromSource(bufferSource(core));
    expect(elf.header).toMatchObject({ type: 4, machine: 62, ehsize: 8, phnum: 4 });
    expect(elf.programHeaders.map((p) => p.type)).toEqual([PT_NOTE, PT_LOAD, PT_LOAD, PT_LOAD]);
    const notes = await elf.notes();
    expect(notes.map((n) => [n.name, n.type, n.desc.length])).toEqual([
      ["CORE", 1, 336],
      ["VMCOREINFO", 0, 17],
    ]);
    expect(new TextDecoder().decode(notes[1]?.desc)).toBe("OSRELEASE=7.2.13\n");
    expect(elf.physRanges()).toEqual([
      { start: 0x1000n, end: 0x3000n },
      { start: 0x3000n, end: 0x4000n },
      { start: 0x100000n, end: 0x101000n },
    ]);
  });

  it("maps physical addresses through PT_LOAD p_paddr", async () => {
    const elf = await ElfReader.fromSource(bufferSource(core));
    const seg1Offset = elf.programHeaders[2]?.offset ?? -1;
    expect(elf.physToFileOffset(0x1000n)).toBe(seg1Offset);
    expect(elf.physToFileOffset(0x2fffn)).toBe(seg1Offset + 0x1fff);
    expect(elf.physToFileOffset(0xfffn)).toBeUndefined();
    expect(elf.physToFileOffset(0x4000n)).toBeUndefined();
    expect(elf.physToFileOffset(0x100800n)).toBeUndefined(); // in p_memsz, not in the file
    expect(elf.isMapped(0x100800n)).toBe(true);
    expect(await elf.readPhys(0x1010n, 16)).toEqual(seg1.slice(0x10, 0x20));
    // Across the seg1/seg2 boundary.
    const across = await elf.readPhys(0x2ff0n, 0x20);
    expect(across).toEqual(new Uint8Array([...seg1.slice(0x1ff0), ...seg2.slice(0, 0x10)]));
    // Into the zero-filled tail.
    const tail = await elf.readPhys(0x1007f0n, 0x20);
    expect(tail).toEqual(new Uint8Array([...seg3.slice(0x7f0), ...new Uint8Array(0x10)]));
    const err = await expectDecodeError(elf.readPhys(0x3ff0n, 0x20), /0x4000 is not in any PT_LOAD/);
    expect(err).toBeInstanceOf(UnmappedPhysError);
    expect((err as UnmappedPhysError).paddr).toBe(0x4000n);
  });

  describe("through a file handle", () => {
    const dir = mkdtempSync(join(tmpdir(), "elf-test-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("opens, reads and closes a dump file", async () => {
      const path = join(dir, "vmcore");
      writeFileSync(path, core);
      const elf = await ElfReader.open(path);
      try {
        expect(await elf.readPhys(0x3000n, 8)).toEqual(seg2.slice(0, 8));
        expect((await elf.notes()).length).toBe(2);
      } finally {
        await elf.close();
      }
    });
  });

  it("reads only what it needs from a guest-RAM-sized dump", async () => {
    // 4 GiB "file": headers are real, RAM contents are synthesized on demand and reads are counted.
    const ramOffset = 0x1000;
    const headerBytes = buildCore({
      machine: 183,
      segments: [{ paddr: 0x4000_0000n, data: new Uint8Array(0) }],
    });
    const hv = new DataView(headerBytes.buffer);
    hv.setBigUint64(64 + 8, BigInt(ramOffset), true); // p_offset
    hv.setBigUint64(64 + 32, 1n << 32n, true); // p_filesz 4 GiB
    hv.setBigUint64(64 + 40, 1n << 32n, true); // p_memsz
    let bytesRead = 0;
    const source: RandomAccessSource = {
      size: ramOffset + 2 ** 32,
      read(offset, length) {
        bytesRead += length;
        if (offset < headerBytes.length) return Promise.resolve(headerBytes.slice(offset, offset + length));
        return Promise.resolve(Uint8Array.from({ length }, (_, i) => (offset + i) & 255));
      },
    };
    const elf = await ElfReader.fromSource(source);
    const page = await elf.readPhys(0x4000_0000n + 0xfff0_0000n, 4096);
    expect(page[5]).toBe((ramOffset + 0xfff0_0000 + 5) & 255);
    expect(bytesRead).toBeLessThan(8192);
  });

  it("accepts PN_XNUM program header counts", async () => {
    const x = buildCore({ xnum: true, segments: [{ paddr: 0x1000n, data: seg2 }] });
    const elf = await ElfReader.fromSource(bufferSource(x));
    expect(elf.header.phnum).toBe(1);
    expect(await elf.readPhys(0x1000n, 4)).toEqual(seg2.slice(0, 4));
  });

  it("rejects what it cannot read, naming the offset", async () => {
    const patch = (at: number, bytes: number[]): Uint8Array => {
      const c = core.slice();
      c.set(bytes, at);
      return c;
    };
    const open = (b: Uint8Array): Promise<ElfReader> => ElfReader.fromSource(bufferSource(b));
    await expectDecodeError(open(patch(0, [0x7f, 0x45, 0x4c, 0x47])), /bad magic/);
    await expectDecodeError(open(patch(4, [1])), /not ELFCLASS64/);
    await expectDecodeError(open(patch(5, [2])), /not little-endian/);
    await expectDecodeError(open(patch(18, [40, 0])), /e_machine 40 is neither/);
    await expectDecodeError(open(patch(54, [32, 0])), /e_phentsize 32/);
    await expectDecodeError(open(core.slice(0, 40)), /ELF header .* runs past end/);
    await expectDecodeError(
      open(core.slice(0, core.length - 1)),
      /runs past end of file \(truncated dump\?\)/,
    );
    const bigFilesz = core.slice();
    new DataView(bigFilesz.buffer).setBigUint64(64 + 56 + 32, 0x2000n, true); // seg3 filesz > memsz
    await expectDecodeError(open(bigFilesz), /p_filesz 0x2000 > p_memsz 0x1000/);
    const err = await expectDecodeError(open(patch(56, [0xf0, 0xff])), /program headers/);
    expect(err.offset).toBe(64);
  });

  it("fuzz: mutated headers give DecodeError or a usable reader, nothing else", async () => {
    const headerEnd = 64 + 4 * 56;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: headerEnd - 1 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.bigInt({ min: 0n, max: 0x200000n }),
        async (edits, paddr) => {
          const blob = core.slice();
          for (const [at, value] of edits) blob[at] = value;
          try {
            const elf = await ElfReader.fromSource(bufferSource(blob));
            await elf.notes();
            await elf.readPhys(paddr, 64);
          } catch (err) {
            if (!(err instanceof DecodeError)) throw err;
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
