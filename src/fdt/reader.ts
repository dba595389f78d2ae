// Flattened device tree (DTB) reader. Written for untrusted input: KHO blobs come out of guest memory
// dumps and debugfs, so every length and offset is checked against the blob and the header, and every
// failure is a DecodeError naming the byte offset. The walk only moves forward, so it cannot hang.
// Format: Devicetree Specification v0.4, chapter 5; limits follow libfdt's fdt_check_header().

import { DecodeError } from "../errors.js";

export const FDT_MAGIC = 0xd00dfeed;
export const FDT_BEGIN_NODE = 0x1;
export const FDT_END_NODE = 0x2;
export const FDT_PROP = 0x3;
export const FDT_NOP = 0x4;
export const FDT_END = 0x9;

/** Header size of a version 17 blob; version 16 lacks the trailing size_dt_struct field. */
export const FDT_V17_HEADER_SIZE = 40;
const FDT_V16_HEADER_SIZE = 36;
/** The newest layout this reader understands (libfdt's FDT_LAST_SUPPORTED_VERSION). */
const LAST_SUPPORTED_VERSION = 17;
const FIRST_SUPPORTED_VERSION = 16;
const DEFAULT_MAX_DEPTH = 64;

export interface FdtHeader {
  readonly totalSize: number;
  readonly offDtStruct: number;
  readonly offDtStrings: number;
  readonly offMemRsvmap: number;
  readonly version: number;
  readonly lastCompVersion: number;
  readonly bootCpuidPhys: number;
  readonly sizeDtStrings: number;
  /** Absent (undefined) in version 16 blobs. */
  readonly sizeDtStruct: number | undefined;
}

export interface FdtReservation {
  readonly address: bigint;
  readonly size: bigint;
}

/** The part of a node a writer needs; FdtNode adds what only a reader knows. */
export interface FdtNodeInput {
  readonly name: string;
  readonly props: ReadonlyMap<string, Uint8Array>;
  readonly children: readonly FdtNodeInput[];
}

export interface FdtNode extends FdtNodeInput {
  /** "" for the root. */
  readonly name: string;
  /** "/" for the root, "/a/b" below it. */
  readonly path: string;
  /** Property values in blob order (copies, safe to keep). */
  readonly props: ReadonlyMap<string, Uint8Array>;
  readonly children: readonly FdtNode[];
  /** Blob offset of the node's FDT_BEGIN_NODE token. */
  readonly offset: number;
  /** Blob offset of each property's value, for error messages about the value. */
  readonly propOffsets: ReadonlyMap<string, number>;
}

export interface Fdt {
  readonly header: FdtHeader;
  readonly reservations: readonly FdtReservation[];
  readonly root: FdtNode;
}

export interface ParseFdtOptions {
  /** Deepest node nesting accepted (root = depth 1). Default 64. */
  readonly maxDepth?: number;
}

function fail(offset: number, reason: string): never {
  throw new DecodeError("fdt", offset, reason);
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

function be32(view: DataView, offset: number): number {
  return view.getUint32(offset, false);
}

export function parseFdtHeader(blob: Uint8Array): FdtHeader {
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (blob.length < FDT_V16_HEADER_SIZE) fail(0, `blob is ${blob.length} bytes, shorter than an FDT header`);
  const magic = be32(view, 0);
  if (magic !== FDT_MAGIC) fail(0, `bad magic ${hex(magic)} (expected ${hex(FDT_MAGIC)})`);
  const version = be32(view, 20);
  const lastCompVersion = be32(view, 24);
  if (version < FIRST_SUPPORTED_VERSION) fail(20, `version ${version} is older than 16`);
  if (lastCompVersion > LAST_SUPPORTED_VERSION) {
    fail(24, `last_comp_version ${lastCompVersion} needs a reader newer than version 17`);
  }
  if (lastCompVersion > version) fail(24, `last_comp_version ${lastCompVersion} > version ${version}`);
  const headerSize = version >= 17 ? FDT_V17_HEADER_SIZE : FDT_V16_HEADER_SIZE;
  if (blob.length < headerSize) fail(0, `blob is ${blob.length} bytes, shorter than a v${version} header`);
  const header: FdtHeader = {
    totalSize: be32(view, 4),
    offDtStruct: be32(view, 8),
    offDtStrings: be32(view, 12),
    offMemRsvmap: be32(view, 16),
    version,
    lastCompVersion,
    bootCpuidPhys: be32(view, 28),
    sizeDtStrings: be32(view, 32),
    sizeDtStruct: version >= 17 ? be32(view, 36) : undefined,
  };
  if (header.totalSize < headerSize) fail(4, `totalsize ${hex(header.totalSize)} is smaller than the header`);
  if (header.totalSize > blob.length) {
    fail(
      4,
      `totalsize ${hex(header.totalSize)} exceeds the ${hex(blob.length)}-byte blob (truncated FDT; ` +
        `debugfs kho/out/fdt keeps its fs_initcall size)`,
    );
  }
  checkBlock(header, headerSize, 16, header.offMemRsvmap, 0, 8);
  checkBlock(header, headerSize, 8, header.offDtStruct, header.sizeDtStruct ?? 0, 4);
  checkBlock(header, headerSize, 12, header.offDtStrings, header.sizeDtStrings, 1);
  return header;
}

/** A block must start after the header and end inside totalsize. */
function checkBlock(
  header: FdtHeader,
  headerSize: number,
  fieldOffset: number,
  start: number,
  size: number,
  align: number,
): void {
  if (start < headerSize) fail(fieldOffset, `block offset ${hex(start)} points into the header`);
  if (start % align !== 0) fail(fieldOffset, `block offset ${hex(start)} is not ${align}-byte aligned`);
  if (start + size > header.totalSize) {
    fail(fieldOffset, `block ${hex(start)}+${hex(size)} runs past totalsize ${hex(header.totalSize)}`);
  }
}

function parseReservations(view: DataView, header: FdtHeader): FdtReservation[] {
  const out: FdtReservation[] = [];
  for (let off = header.offMemRsvmap; ; off += 16) {
    if (off + 16 > header.totalSize) fail(off, "memory reservation block has no terminating entry");
    const address = view.getBigUint64(off, false);
    const size = view.getBigUint64(off + 8, false);
    if (address === 0n && size === 0n) return out;
    out.push({ address, size });
  }
}

/** Strings are NUL-terminated; decoded as UTF-8 with replacement, which never throws. */
const utf8 = new TextDecoder("utf-8", { fatal: false });

function cString(blob: Uint8Array, start: number, end: number, what: string): string {
  const nul = blob.indexOf(0, start);
  if (nul < 0 || nul >= end) fail(start, `${what} is not NUL-terminated inside its block`);
  return utf8.decode(blob.subarray(start, nul));
}

interface MutableNode {
  name: string;
  path: string;
  props: Map<string, Uint8Array>;
  propOffsets: Map<string, number>;
  children: MutableNode[];
  offset: number;
}

export function parseFdt(blob: Uint8Array, options: ParseFdtOptions = {}): Fdt {
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
  const header = parseFdtHeader(blob);
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const reservations = parseReservations(view, header);

  const structStart = header.offDtStruct;
  // v16 has no struct size: the block may extend up to totalsize, and FDT_END marks its end.
  const structEnd = structStart + (header.sizeDtStruct ?? header.totalSize - structStart);
  const stringsStart = header.offDtStrings;
  const stringsEnd = stringsStart + header.sizeDtStrings;

  const stack: MutableNode[] = [];
  let root: MutableNode | undefined;
  let off = structStart;
  const token = (): number => {
    if (off + 4 > structEnd) fail(off, "structure block ends without FDT_END");
    const t = be32(view, off);
    off += 4;
    return t;
  };
  const align4 = (n: number): number => (n + 3) & ~3;

  for (;;) {
    const tokenOffset = off;
    const tag = token();
    switch (tag) {
      case FDT_BEGIN_NODE: {
        const nul = blob.indexOf(0, off);
        if (nul < 0 || nul >= structEnd)
          fail(off, "node name is not NUL-terminated inside the structure block");
        const name = utf8.decode(blob.subarray(off, nul));
        off = align4(nul + 1);
        if (off > structEnd) fail(tokenOffset, "node name padding runs past the structure block");
        const parent = stack[stack.length - 1];
        if (!parent && root) fail(tokenOffset, "second root node");
        if (stack.length >= maxDepth) fail(tokenOffset, `nodes nested deeper than ${maxDepth}`);
        if (parent) {
          if (name === "") fail(tokenOffset, `empty node name under ${parent.path}`);
          if (name.includes("/")) fail(tokenOffset, `node name "${name}" contains "/"`);
          if (parent.children.some((c) => c.name === name)) {
            fail(tokenOffset, `duplicate node ${parent.path === "/" ? "" : parent.path}/${name}`);
          }
        }
        const path = parent ? `${parent.path === "/" ? "" : parent.path}/${name}` : "/";
        const node: MutableNode = {
          name,
          path,
          props: new Map(),
          propOffsets: new Map(),
          children: [],
          offset: tokenOffset,
        };
        if (parent) parent.children.push(node);
        else root = node;
        stack.push(node);
        break;
      }
      case FDT_END_NODE:
        if (!stack.pop()) fail(tokenOffset, "FDT_END_NODE without an open node");
        break;
      case FDT_PROP: {
        const node = stack[stack.length - 1];
        if (!node) fail(tokenOffset, "property outside any node");
        if (off + 8 > structEnd) fail(off, "property header runs past the structure block");
        const len = be32(view, off);
        const nameoff = be32(view, off + 4);
        const valueStart = off + 8;
        if (len > structEnd - valueStart)
          fail(off, `property length ${hex(len)} runs past the structure block`);
        if (nameoff >= header.sizeDtStrings) {
          fail(off + 4, `property name offset ${hex(nameoff)} is outside the strings block`);
        }
        const name = cString(blob, stringsStart + nameoff, stringsEnd, "property name");
        if (name === "") fail(off + 4, `empty property name in ${node.path}`);
        if (node.children.length > 0)
          fail(tokenOffset, `property "${name}" after a child node in ${node.path}`);
        if (node.props.has(name)) fail(tokenOffset, `duplicate property "${name}" in ${node.path}`);
        node.props.set(name, blob.slice(valueStart, valueStart + len));
        node.propOffsets.set(name, valueStart);
        off = align4(valueStart + len);
        if (off > structEnd) fail(valueStart, "property value padding runs past the structure block");
        break;
      }
      case FDT_NOP:
        break;
      case FDT_END:
        if (stack.length > 0) fail(tokenOffset, `FDT_END inside open node ${stack[stack.length - 1]?.path}`);
        if (!root) fail(tokenOffset, "structure block has no root node");
        return { header, reservations, root: freeze(root) };
      default:
        fail(tokenOffset, `unknown structure token ${hex(tag)}`);
    }
  }
}

function freeze(node: MutableNode): FdtNode {
  return { ...node, children: node.children.map(freeze) };
}

/** Look a node up by absolute path ("/", "/chosen", "/a/b"). */
export function findNode(root: FdtNode, path: string): FdtNode | undefined {
  let node: FdtNode | undefined = root;
  for (const part of path.split("/").filter((p) => p !== "")) {
    node = node.children.find((c) => c.name === part);
    if (!node) return undefined;
  }
  return node;
}

// ---- Property value helpers. Each checks the length and names the value's blob offset on failure. ----

function valueOf(node: FdtNode, name: string): { value: Uint8Array; at: number } {
  const value = node.props.get(name);
  if (!value) fail(node.offset, `${node.path} has no property "${name}"`);
  return { value, at: node.propOffsets.get(name) ?? node.offset };
}

function valueView(value: Uint8Array): DataView {
  return new DataView(value.buffer, value.byteOffset, value.byteLength);
}

/** Big-endian 32-bit cells (the standard DT encoding). */
export function propCells(node: FdtNode, name: string): number[] {
  const { value, at } = valueOf(node, name);
  if (value.length % 4 !== 0) fail(at, `${node.path}:${name} is ${value.length} bytes, not whole cells`);
  const view = valueView(value);
  return Array.from({ length: value.length / 4 }, (_, i) => view.getUint32(i * 4, false));
}

export function propU32(node: FdtNode, name: string): number {
  const { value, at } = valueOf(node, name);
  if (value.length !== 4) fail(at, `${node.path}:${name} is ${value.length} bytes, expected one 4-byte cell`);
  return valueView(value).getUint32(0, false);
}

/** A big-endian u64 (two cells). */
export function propU64(node: FdtNode, name: string): bigint {
  const { value, at } = valueOf(node, name);
  if (value.length !== 8) fail(at, `${node.path}:${name} is ${value.length} bytes, expected 8`);
  return valueView(value).getBigUint64(0, false);
}

/** A raw native little-endian u64, as KHO writes with fdt_property(&u64, 8); not DT cells. */
export function propLeU64(node: FdtNode, name: string): bigint {
  const { value, at } = valueOf(node, name);
  if (value.length !== 8) fail(at, `${node.path}:${name} is ${value.length} bytes, expected 8`);
  return valueView(value).getBigUint64(0, true);
}

/** A raw native little-endian u32 (lib/test_kho.c's magic, nr_folios and csum). */
export function propLeU32(node: FdtNode, name: string): number {
  const { value, at } = valueOf(node, name);
  if (value.length !== 4) fail(at, `${node.path}:${name} is ${value.length} bytes, expected 4`);
  return valueView(value).getUint32(0, true);
}

/** A list of NUL-terminated strings; every string, including the last, must end in NUL. */
export function decodeStringList(value: Uint8Array, at: number, what: string): string[] {
  if (value.length === 0) return [];
  if (value[value.length - 1] !== 0) fail(at, `${what} is not NUL-terminated`);
  const out: string[] = [];
  let start = 0;
  while (start < value.length) {
    const nul = value.indexOf(0, start);
    out.push(utf8.decode(value.subarray(start, nul)));
    start = nul + 1;
  }
  return out;
}

export function propStringList(node: FdtNode, name: string): string[] {
  const { value, at } = valueOf(node, name);
  return decodeStringList(value, at, `${node.path}:${name}`);
}

/** Exactly one NUL-terminated string. */
export function propString(node: FdtNode, name: string): string {
  const { value, at } = valueOf(node, name);
  const list = decodeStringList(value, at, `${node.path}:${name}`);
  if (list.length !== 1) fail(at, `${node.path}:${name} holds ${list.length} strings, expected one`);
  return list[0] ?? "";
}
