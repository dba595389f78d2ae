// Stub firmware for the KVM probe, assembled by hand: with no kernel at hand we still want to
// see a vCPU run kernel-like guest code and do device I/O under KVM. Each stub prints
// PROBE_MARKER on the first serial port and halts. Loaded with `-bios`: no boot protocol.
import type { ArchSpec } from "../arch.js";

export const PROBE_MARKER = "kho-kvm-probe-ok";

type Builder = (text: string) => Buffer;

const BUILDERS: Record<ArchSpec["probeStub"], Builder> = {
  "x86-reset-vector": x86ResetVector,
  "arm64-pl011": arm64Pl011,
};

export function probeStub(spec: ArchSpec, text = `${PROBE_MARKER}\r\n`): Buffer {
  return BUILDERS[spec.probeStub](text);
}

/**
 * A 64 KiB x86 BIOS image. QEMU maps it just below 4 GiB and aliases it at 0xf0000; the CPU
 * starts in real mode at 0xfffffff0 (offset 0xfff0), which far-jumps to F000:0000 (offset 0),
 * so the rest runs from the low alias, as SeaBIOS does.
 *
 * Printing from real mode is not enough: a software KVM (kvm-pvm, no VMX) runs that fine but
 * then fails on real kernels ("KVM internal error ... emulation failure" on a VEX-encoded BMI2
 * instruction in the decompressor). So the stub enters 32-bit protected mode and runs SHLX
 * (when CPUID says BMI2 exists) before printing.
 */
function x86ResetVector(text: string): Buffer {
  const ROM_BASE = 0xf0000; // the low alias
  const GDT = 0x100;
  const GDT_DESC = 0x120;
  const PM32 = 0x200;
  const rom = Buffer.alloc(0x10000, 0xf4); // hlt everywhere
  const put = (offset: number, bytes: readonly number[]) => Buffer.from(bytes).copy(rom, offset);
  const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

  // Real mode: load the GDT (o32 for a 32-bit base), set CR0.PE, far jump to the 32-bit code.
  put(0, [
    ...[0xfa], // cli
    ...[0x66, 0x2e, 0x0f, 0x01, 0x16, GDT_DESC & 0xff, GDT_DESC >> 8], // lgdt cs:[GDT_DESC]
    ...[0x0f, 0x20, 0xc0, 0x0c, 0x01, 0x0f, 0x22, 0xc0], // mov eax, cr0; or al, 1; mov cr0, eax
    ...[0x66, 0xea, ...le32(ROM_BASE + PM32), 0x08, 0x00], // jmp dword 0x08:PM32
  ]);
  // Flat 4 GiB code (0x08) and data (0x10) segments with "accessed" already set, as SeaBIOS
  // does: the GDT is in ROM, and kvm-pvm hangs when the CPU tries to set that bit there.
  put(GDT, [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0, 0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0]);
  put(GDT_DESC, [0x17, 0x00, ...le32(ROM_BASE + GDT)]);

  const print = [0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8 (COM1 data register)
  for (const byte of Buffer.from(text, "latin1")) print.push(0xb0, byte, 0xee); // mov al, byte; out dx, al
  const halt = [0xfa, 0xf4, 0xeb, 0xfd]; // cli; hlt; jmp back to hlt
  const bmi2 = [
    ...[0xba, ...le32(1), 0xb9, ...le32(2)], // mov edx, 1; mov ecx, 2
    ...[0xc4, 0xe2, 0x69, 0xf7, 0xc1], // shlx eax, ecx, edx (VEX.LZ.66.0F38.W0 F7 /r)
    ...[0x83, 0xf8, 0x04, 0x75, print.length], // cmp eax, 4; jne halt (skips the marker)
  ];
  if (print.length > 127) throw new Error("probe marker too long for a short jump");
  put(PM32, [
    ...[0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0], // mov ax, 0x10; mov ds/es/ss, ax
    ...[0xb8, ...le32(7), 0x31, 0xc9, 0x0f, 0xa2], // mov eax, 7; xor ecx, ecx; cpuid
    ...[0xf7, 0xc3, ...le32(1 << 8), 0x74, bmi2.length], // test ebx, BMI2; jz print
    ...bmi2,
    ...print,
    ...halt,
  ]);
  put(0xfff0, [0xea, 0x00, 0x00, 0x00, 0xf0]); // jmp far F000:0000
  return rom;
}

/** AArch64 code for QEMU virt's flash at address 0: enable the PL011 at 0x09000000, print, wfi. */
function arm64Pl011(text: string): Buffer {
  const movzW0 = (imm: number) => 0x52800000 | (imm << 5); // movz w0, #imm
  const words: number[] = [
    0xd2a12001, // movz x1, #0x0900, lsl #16
    movzW0(0x301), // UARTEN | TXE | RXE (QEMU's PL011 drops data while disabled)
    0xb9003020, // str w0, [x1, #0x30] (UARTCR)
  ];
  for (const byte of Buffer.from(text, "latin1")) words.push(movzW0(byte), 0x39000020); // strb w0, [x1]
  words.push(0xd503207f, 0x17ffffff); // wfi; b back to wfi
  const out = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => out.writeUInt32LE(w >>> 0, i * 4));
  return out;
}
