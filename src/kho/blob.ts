// What every subtree decoder shares: the guest-memory interface, the page size, the error naming a
// structure's physical address, a bounds-checked reader over packed little-endian structs, the FDT
// compatible check, and the small pieces the text and JSON presentations are built from.

import { DecodeError } from "../errors.js";
import { type FdtNode, propString } from "../fdt/reader.js";
import type { PreservedChunk } from "./radix.js";

/** x86_64 and arm64 with 4K pages; KHO refuses to mix page sizes anyway. */
export const PAGE_SIZE = 4096;
export const hex = (n: bigint | number): string => `0x${n.toString(16)}`;

/** A decode error inside a structure in guest memory: names its physical address. */
export class KhoBlobError extends DecodeError {
  override readonly name: string = "KhoBlobError";
  constructor(
    format: string,
    /** Physical address of the structure (blob, block, chunk) that is wrong. */
    readonly phys: bigint,
    offset: number,
    reason: string,
  ) {
    super(format, offset, `${reason} (structure at ${hex(phys)})`);
  }
}

/** Guest-physical memory, e.g. an ElfReader over a dump-guest-memory vmcore. */
export interface PhysMemory {
  readPhys(paddr: bigint, length: number): Promise<Uint8Array>;
}

// ------------------------------------------------------------------------------------------------
// Reading struct bytes

const latin1 = new TextDecoder("latin1");

/** Bounds-checked little-endian fields of a structure read from `phys`; errors are KhoBlobErrors. */
export function structReader(bytes: Uint8Array, format: string, phys: bigint) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (offset: number, size: number): void => {
    if (offset + size > bytes.length) {
      throw new KhoBlobError(
        format,
        phys,
        offset,
        `structure is ${bytes.length} bytes, field needs ${offset + size}`,
      );
    }
  };
  return {
    u16: (o: number): number => {
      need(o, 2);
      return view.getUint16(o, true);
    },
    u32: (o: number): number => {
      need(o, 4);
      return view.getUint32(o, true);
    },
    u64: (o: number): bigint => {
      need(o, 8);
      return view.getBigUint64(o, true);
    },
    /** A fixed char[len] field: text up to the first NUL (or the whole field, as strscpy would cut it). */
    chars: (o: number, len: number): string => {
      need(o, len);
      const field = bytes.subarray(o, o + len);
      const nul = field.indexOf(0);
      return latin1.decode(nul < 0 ? field : field.subarray(0, nul));
    },
    fail: (offset: number, reason: string): never => {
      throw new KhoBlobError(format, phys, offset, reason);
    },
  };
}

export function toSafeNumber(v: bigint, fail: (reason: string) => never, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${hex(v)} is absurdly large`);
  return Number(v);
}

/** An FDT blob's node must carry exactly this `compatible`. */
export function requireCompatible(node: FdtNode, expected: string, format: string): void {
  const compat = propString(node, "compatible");
  if (compat !== expected) {
    throw new DecodeError(
      format,
      node.propOffsets.get("compatible") ?? node.offset,
      `compatible "${compat}" is not "${expected}"`,
    );
  }
}

// ------------------------------------------------------------------------------------------------
// Presentation pieces

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function humanSize(bytes: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Counts are JSON numbers; a corrupt one too large for a double stays exact as a hex string. */
export const countJson = (v: bigint): JsonValue =>
  v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : hex(v);
export const chunkJson = (c: PreservedChunk): JsonValue => ({ phys: hex(c.phys), order: c.order });
