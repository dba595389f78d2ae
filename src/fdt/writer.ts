// Flattened device tree writer: builds a packed version 17 blob (the layout dtc and libfdt's
// fdt_pack() produce: header, memory reservation block, structure block, strings block). Used by
// tests and fixtures to make valid and deliberately broken KHO trees without a guest.

import type { FdtNodeInput, FdtReservation } from "./reader.js";
import { FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_PROP, FDT_V17_HEADER_SIZE } from "./reader.js";

export interface WriteFdtOptions {
  readonly reservations?: readonly FdtReservation[];
  readonly bootCpuidPhys?: number;
}

const utf8 = new TextEncoder();

/** Growable big-endian byte sink. */
class Sink {
  private bytes = new Uint8Array(256);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const next = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }
  u32(value: number): void {
    this.reserve(4);
    new DataView(this.bytes.buffer).setUint32(this.length, value >>> 0, false);
    this.length += 4;
  }
  u64(value: bigint): void {
    this.reserve(8);
    new DataView(this.bytes.buffer).setBigUint64(this.length, BigInt.asUintN(64, value), false);
    this.length += 8;
  }
  raw(data: Uint8Array): void {
    this.reserve(data.length);
    this.bytes.set(data, this.length);
    this.length += data.length;
  }
  align(n: number): void {
    const pad = (n - (this.length % n)) % n;
    this.reserve(pad);
    this.bytes.fill(0, this.length, this.length + pad);
    this.length += pad;
  }
  result(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}

/** Serialize a node tree (the root's name is written as "", whatever it holds). */
export function writeFdt(root: FdtNodeInput, options: WriteFdtOptions = {}): Uint8Array {
  const strings = new Sink();
  const stringOffsets = new Map<string, number>();
  const nameOffset = (name: string): number => {
    let at = stringOffsets.get(name);
    if (at === undefined) {
      at = strings.length;
      stringOffsets.set(name, at);
      strings.raw(utf8.encode(name));
      strings.raw(new Uint8Array([0]));
    }
    return at;
  };

  const struct = new Sink();
  const emit = (node: FdtNodeInput, isRoot: boolean): void => {
    struct.u32(FDT_BEGIN_NODE);
    struct.raw(utf8.encode(isRoot ? "" : node.name));
    struct.raw(new Uint8Array([0]));
    struct.align(4);
    for (const [name, value] of node.props) {
      struct.u32(FDT_PROP);
      struct.u32(value.length);
      struct.u32(nameOffset(name));
      struct.raw(value);
      struct.align(4);
    }
    for (const child of node.children) emit(child, false);
    struct.u32(FDT_END_NODE);
  };
  emit(root, true);
  struct.u32(FDT_END);

  const rsv = new Sink();
  for (const r of options.reservations ?? []) {
    rsv.u64(r.address);
    rsv.u64(r.size);
  }
  rsv.u64(0n);
  rsv.u64(0n);

  const offMemRsvmap = FDT_V17_HEADER_SIZE; // 40, already 8-byte aligned
  const offDtStruct = offMemRsvmap + rsv.length;
  const offDtStrings = offDtStruct + struct.length;
  const totalSize = offDtStrings + strings.length;

  const out = new Sink();
  for (const field of [
    FDT_MAGIC,
    totalSize,
    offDtStruct,
    offDtStrings,
    offMemRsvmap,
    17, // version
    16, // last_comp_version, as dtc and libfdt write
    options.bootCpuidPhys ?? 0,
    strings.length,
    struct.length,
  ]) {
    out.u32(field);
  }
  out.raw(rsv.result());
  out.raw(struct.result());
  out.raw(strings.result());
  return out.result();
}

// ---- Value encoders, the inverses of the reader's helpers. ----

/** Big-endian 32-bit cells. */
export function cells(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint32(i * 4, v >>> 0, false));
  return out;
}

/** A big-endian u64 (two cells). */
export function beU64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, value), false);
  return out;
}

/** A native little-endian u64, as KHO stores addresses and sizes. */
export function leU64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
  return out;
}

/** A native little-endian u32. */
export function leU32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0, true);
  return out;
}

/** One or more NUL-terminated strings. */
export function strings(...values: string[]): Uint8Array {
  const parts = values.map((v) => utf8.encode(`${v}\0`));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Shorthand for building trees in tests: fdtNode("name", { prop: bytes }, [children]). */
export function fdtNode(
  name: string,
  props: Record<string, Uint8Array> = {},
  children: FdtNodeInput[] = [],
): FdtNodeInput {
  return { name, props: new Map(Object.entries(props)), children };
}
