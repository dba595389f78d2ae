// What kind of kernel image a file is, from its documented headers: the x86 bzImage setup
// header (Documentation/arch/x86/boot.rst), the arm64 Image header
// (Documentation/arch/arm64/booting.rst), arm64 Image.gz and EFI zboot wrappers, and ELF
// vmlinux. Parsing never throws anything but DecodeError: a short or hostile file names the
// offset it broke at.
import { archSpec, ARCH_NAMES, type ArchName } from "../arch.js";
import { DecodeError } from "../errors.js";
import { decompress, gunzipExact, type Compression } from "./decompress.js";
import { findBanner } from "./ikconfig.js";

/** Supported arches by name; others as the kernel's ELF machine calls them. */
export type KernelArch =
  | ArchName
  | "i386"
  | "arm"
  | "riscv64"
  | "ppc64"
  | "s390x"
  | "loongarch64"
  | "mips"
  | `ELF machine ${number}`;

export interface BzImageHeader {
  /** setup_sects with the historical 0 meaning 4. */
  readonly setupSects: number;
  /** Bytes before the protected-mode code: (setup_sects + 1) * 512. */
  readonly setupSize: number;
  /** Boot protocol version, "2.15". */
  readonly protocol: string;
  /** The kernel_version string, e.g. "6.1.0-18-amd64 (debian-kernel@...) #1 SMP ...". */
  readonly kernelVersion: string | undefined;
  readonly loadflags: number;
  readonly xloadflags: {
    readonly raw: number;
    /** XLF_KERNEL_64: a 64-bit entry point at 0x200, i.e. an x86_64 kernel. */
    readonly kernel64: boolean;
    readonly canLoadAbove4G: boolean;
    readonly efiHandover32: boolean;
    readonly efiHandover64: boolean;
    /** XLF_EFI_KEXEC: the kernel can be kexec'd from an EFI-booted one (KHO's path on EFI). */
    readonly efiKexec: boolean;
  };
  /** payload_offset/payload_length, relative to the protected-mode code. */
  readonly payloadOffset: number;
  readonly payloadLength: number;
  /** Where the compressed vmlinux starts in the file: setupSize + payloadOffset. */
  readonly payloadFileOffset: number;
  readonly initSize: number;
}

export interface Arm64ImageHeader {
  readonly textOffset: number;
  /** 0 for kernels older than 3.17. */
  readonly imageSize: number;
  readonly flags: {
    readonly raw: number;
    readonly bigEndian: boolean;
    readonly pageSize: "unspecified" | "4K" | "16K" | "64K";
    /** Bit 3: the kernel may be placed anywhere in memory (else close to the base of DRAM). */
    readonly placeAnywhere: boolean;
  };
  /** The image starts with "MZ": it doubles as a PE/COFF EFI application. */
  readonly efiStub: boolean;
  /** res5: the PE header offset when efiStub. */
  readonly peOffset: number;
}

export interface ElfHeader {
  readonly bits: 32 | 64;
  readonly endian: "little" | "big";
  /** e_type: 2 ET_EXEC for an x86 vmlinux, 3 ET_DYN for a relocatable (PIE) arm64 one. */
  readonly type: number;
  readonly machine: number;
  readonly arch: KernelArch;
}

export type Arm64Wrapper =
  | { readonly kind: "none" }
  | { readonly kind: "gzip"; readonly ms: number }
  | { readonly kind: "zboot"; readonly compression: Compression; readonly ms: number };

export type KernelImage =
  | { readonly kind: "bzImage"; readonly arch: "x86_64" | "i386"; readonly header: BzImageHeader }
  | {
      readonly kind: "arm64-image";
      readonly arch: "arm64";
      readonly header: Arm64ImageHeader;
      readonly wrapper: Arm64Wrapper;
      /** The (decompressed) Image itself, where IKCONFIG and the banner are searched. */
      readonly image: Uint8Array;
    }
  | { readonly kind: "elf"; readonly arch: KernelArch; readonly header: ElfHeader }
  | { readonly kind: "not-a-kernel"; readonly reason: string };

/** Bounds-checked little-endian reads: a short file is a DecodeError, never a RangeError. */
class Reader {
  constructor(
    readonly bytes: Uint8Array,
    readonly format: string,
  ) {}

  private need(at: number, n: number, field: string): void {
    if (at < 0 || at + n > this.bytes.length) {
      throw new DecodeError(
        this.format,
        at,
        `${field} needs ${n} bytes but the data ends at 0x${this.bytes.length.toString(16)}`,
      );
    }
  }

  u8(at: number, field: string): number {
    this.need(at, 1, field);
    return this.bytes[at] ?? 0;
  }

  u16(at: number, field: string, little = true): number {
    this.need(at, 2, field);
    const [a = 0, b = 0] = this.bytes.subarray(at, at + 2);
    return little ? a | (b << 8) : (a << 8) | b;
  }

  u32(at: number, field: string): number {
    return this.u16(at, field) + this.u16(at + 2, field) * 0x10000;
  }

  /** A u64 that must fit a JS number (sizes and offsets do). */
  u64(at: number, field: string): number {
    const hi = this.u32(at + 4, field);
    if (hi >= 0x200000)
      throw new DecodeError(this.format, at, `${field} 0x${hi.toString(16)}xxxxxxxx is implausibly large`);
    return hi * 0x1_0000_0000 + this.u32(at, field);
  }

  ascii(at: number, n: number, field: string): string {
    this.need(at, n, field);
    return String.fromCharCode(...this.bytes.subarray(at, at + n));
  }

  /** A NUL-terminated string of at most `max` bytes. */
  cstring(at: number, max: number, field: string): string {
    this.need(at, 1, field);
    const window = this.bytes.subarray(at, at + max);
    const end = window.indexOf(0);
    if (end < 0) throw new DecodeError(this.format, at, `${field} is not NUL-terminated within ${max} bytes`);
    return Buffer.from(window.subarray(0, end)).toString("latin1");
  }
}

const hasAscii = (b: Uint8Array, at: number, text: string) =>
  b.length >= at + text.length && [...text].every((c, i) => b[at + i] === c.charCodeAt(0));

/** Is this the x86 setup header? ("HdrS" at 0x202, boot protocol 2.00+) */
export const isBzImage = (b: Uint8Array) => hasAscii(b, 0x202, "HdrS");
/** Is this an arm64 Image? ("ARM\x64" at 0x38) */
export const isArm64Image = (b: Uint8Array) => hasAscii(b, 0x38, "ARM\x64");
export const isElf = (b: Uint8Array) => hasAscii(b, 0, "\x7fELF");
/** arm64 EFI zboot (CONFIG_EFI_ZBOOT): "MZ" then "zimg" (drivers/firmware/efi/libstub/zboot-header.S). */
export const isZboot = (b: Uint8Array) => hasAscii(b, 0, "MZ") && hasAscii(b, 4, "zimg");

export function parseBzImageHeader(bytes: Uint8Array): BzImageHeader {
  const r = new Reader(bytes, "bzImage");
  if (r.ascii(0x202, 4, "header magic") !== "HdrS")
    throw new DecodeError("bzImage", 0x202, 'no "HdrS" magic');
  const version = r.u16(0x206, "version");
  const protocol = `${version >> 8}.${String(version & 0xff).padStart(2, "0")}`;
  // payload_offset/length arrived in 2.08; every kernel the harness can boot is far newer.
  if (version < 0x0208)
    throw new DecodeError("bzImage", 0x206, `boot protocol ${protocol} predates payload_offset (2.08)`);
  const setupSects = r.u8(0x1f1, "setup_sects") || 4;
  const setupSize = (setupSects + 1) * 512;
  const versionPtr = r.u16(0x20e, "kernel_version");
  // The pointer is relative to the setup code at 0x200, and the string lives in the setup.
  const kernelVersion = versionPtr ? r.cstring(versionPtr + 0x200, 512, "kernel_version string") : undefined;
  const xlf = version >= 0x020c ? r.u16(0x236, "xloadflags") : 0;
  const payloadOffset = r.u32(0x248, "payload_offset");
  const payloadLength = r.u32(0x24c, "payload_length");
  const payloadFileOffset = setupSize + payloadOffset;
  if (payloadLength === 0 || payloadFileOffset + payloadLength > bytes.length) {
    throw new DecodeError(
      "bzImage",
      0x248,
      `payload 0x${payloadFileOffset.toString(16)}+0x${payloadLength.toString(16)} is outside the file (0x${bytes.length.toString(16)} bytes)`,
    );
  }
  return {
    setupSects,
    setupSize,
    protocol,
    kernelVersion,
    loadflags: r.u8(0x211, "loadflags"),
    xloadflags: {
      raw: xlf,
      kernel64: (xlf & 1) !== 0,
      canLoadAbove4G: (xlf & 2) !== 0,
      efiHandover32: (xlf & 4) !== 0,
      efiHandover64: (xlf & 8) !== 0,
      efiKexec: (xlf & 16) !== 0,
    },
    payloadOffset,
    payloadLength,
    payloadFileOffset,
    initSize: version >= 0x020a ? r.u32(0x260, "init_size") : 0,
  };
}

const PAGE_SIZES = ["unspecified", "4K", "16K", "64K"] as const;

export function parseArm64Header(bytes: Uint8Array): Arm64ImageHeader {
  const r = new Reader(bytes, "arm64 Image");
  if (r.ascii(0x38, 4, "magic") !== "ARM\x64")
    throw new DecodeError("arm64 Image", 0x38, 'no "ARM\\x64" magic');
  const flags = r.u64(0x18, "flags");
  const header: Arm64ImageHeader = {
    textOffset: r.u64(0x08, "text_offset"),
    imageSize: r.u64(0x10, "image_size"),
    flags: {
      raw: flags,
      bigEndian: (flags & 1) !== 0,
      pageSize: PAGE_SIZES[(flags >> 1) & 3] ?? "unspecified",
      placeAnywhere: (flags & 8) !== 0,
    },
    efiStub: r.ascii(0, 2, "code0") === "MZ",
    peOffset: r.u32(0x3c, "res5"),
  };
  if (header.efiStub) checkPeRawEnd(r, header.peOffset, bytes.length);
  return header;
}

/**
 * An EFI-stub Image is also a PE file whose section table says where its last raw byte is: a
 * shorter file was cut (a copy interrupted, a partial download), which would otherwise only
 * show up later as "no IKCONFIG" or a silent boot.
 */
function checkPeRawEnd(r: Reader, pe: number, fileSize: number): void {
  if (r.ascii(pe, 4, "PE signature") !== "PE\0\0") return;
  const sections = r.u16(pe + 6, "NumberOfSections");
  const table = pe + 24 + r.u16(pe + 20, "SizeOfOptionalHeader");
  let rawEnd = 0;
  for (let i = 0; i < sections; i++) {
    const at = table + i * 40;
    rawEnd = Math.max(rawEnd, r.u32(at + 20, "PointerToRawData") + r.u32(at + 16, "SizeOfRawData"));
  }
  if (rawEnd > fileSize) {
    throw new DecodeError(
      "arm64 Image",
      fileSize,
      `truncated: its PE section table ends at byte ${rawEnd}, the file has ${fileSize}`,
    );
  }
}

const ELF_MACHINES: Readonly<Record<number, KernelArch>> = {
  ...Object.fromEntries(ARCH_NAMES.map((a) => [archSpec(a).elfMachine, a])),
  3: "i386",
  8: "mips",
  21: "ppc64",
  22: "s390x",
  40: "arm",
  243: "riscv64",
  258: "loongarch64",
};

export function elfArch(machine: number): KernelArch {
  return ELF_MACHINES[machine] ?? `ELF machine ${machine}`;
}

const ET_EXEC = 2;
/** arm64 links a relocatable vmlinux as PIE. */
const ET_DYN = 3;

export function parseElfHeader(bytes: Uint8Array): ElfHeader {
  const r = new Reader(bytes, "ELF");
  if (r.ascii(0, 4, "e_ident") !== "\x7fELF") throw new DecodeError("ELF", 0, "no ELF magic");
  const cls = r.u8(4, "EI_CLASS");
  const data = r.u8(5, "EI_DATA");
  if (cls !== 1 && cls !== 2) throw new DecodeError("ELF", 4, `EI_CLASS ${cls} is neither 32- nor 64-bit`);
  if (data !== 1 && data !== 2)
    throw new DecodeError("ELF", 5, `EI_DATA ${data} is neither little- nor big-endian`);
  const little = data === 1;
  const machine = r.u16(0x12, "e_machine", little);
  return {
    bits: cls === 1 ? 32 : 64,
    endian: little ? "little" : "big",
    type: r.u16(0x10, "e_type", little),
    machine,
    arch: elfArch(machine),
  };
}

/** arm64 Images of 30-60 MiB are usual; the cap only stops a hostile stream. */
const MAX_IMAGE = 512 << 20;

function arm64Image(image: Uint8Array, wrapper: Arm64Wrapper): KernelImage {
  return { kind: "arm64-image", arch: "arm64", header: parseArm64Header(image), wrapper, image };
}

/**
 * Identifies a kernel image. Wrapped arm64 Images (gzip, zboot) are unwrapped here because
 * nothing about them is known until they are; a bzImage's payload is left to the caller.
 */
export async function readKernelImage(bytes: Uint8Array): Promise<KernelImage> {
  if (isBzImage(bytes)) {
    const header = parseBzImageHeader(bytes);
    return { kind: "bzImage", arch: header.xloadflags.kernel64 ? "x86_64" : "i386", header };
  }
  if (isArm64Image(bytes)) return arm64Image(bytes, { kind: "none" });
  if (isElf(bytes)) {
    const header = parseElfHeader(bytes);
    // Objects, modules and programs are ELF too: a vmlinux is an executable with the banner.
    if ((header.type !== ET_EXEC && header.type !== ET_DYN) || !findBanner(bytes)) {
      return {
        kind: "not-a-kernel",
        reason: `ELF file (e_type ${header.type}) without a Linux version banner`,
      };
    }
    return { kind: "elf", arch: header.arch, header };
  }
  if (isZboot(bytes)) {
    const r = new Reader(bytes, "EFI zboot");
    const offset = r.u32(8, "payload offset");
    const size = r.u32(12, "payload size");
    if (size === 0 || offset + size > bytes.length) {
      throw new DecodeError(
        "EFI zboot",
        8,
        `payload 0x${offset.toString(16)}+0x${size.toString(16)} is outside the file`,
      );
    }
    const inner = await decompress(bytes.subarray(offset, offset + size), {
      what: "EFI zboot payload",
      offset,
      maxOutput: MAX_IMAGE,
    });
    if (!isArm64Image(inner.data))
      return { kind: "not-a-kernel", reason: "EFI zboot payload is not an arm64 Image" };
    return arm64Image(inner.data, { kind: "zboot", compression: inner.format, ms: inner.ms });
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    // Debian's arm64 vmlinuz is Image.gz: the arm64 kernel cannot decompress itself.
    const started = performance.now();
    const inner = gunzipExact(bytes, "gzip-compressed image", 0, MAX_IMAGE);
    if (!isArm64Image(inner))
      return { kind: "not-a-kernel", reason: "gzip data that does not hold an arm64 Image" };
    return arm64Image(inner, { kind: "gzip", ms: performance.now() - started });
  }
  const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  return { kind: "not-a-kernel", reason: `first bytes: ${head || "(empty file)"}` };
}
