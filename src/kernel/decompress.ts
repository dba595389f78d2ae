// Decompresses a kernel payload (bzImage piggy, arm64 Image.gz or zboot) by sniffing its magic.
// Every decoder is given exactly its stream: the kernel's build appends the uncompressed size
// after most formats (size_append), and fzstd and liblzma reject trailing bytes. A corrupt or
// truncated stream is a DecodeError naming the file offset, never the decoder's own exception.
import { crc32, inflateRawSync } from "node:zlib";
import { execa } from "execa";
import { decompress as zstdDecompress } from "fzstd";
import lz4 from "lz4js";
import lzma from "lzma-native";
import { DecodeError, HarnessError } from "../errors.js";

export const COMPRESSIONS = ["gzip", "xz", "zstd", "lz4", "bzip2", "lzma", "lzo"] as const;
export type Compression = (typeof COMPRESSIONS)[number];

/** Magic numbers as the kernel's lib/decompress.c lists them (lz4: the legacy frame `lz4 -l` writes). */
const MAGICS: readonly { readonly format: Compression; readonly magic: readonly number[] }[] = [
  { format: "gzip", magic: [0x1f, 0x8b] },
  { format: "xz", magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { format: "zstd", magic: [0x28, 0xb5, 0x2f, 0xfd] },
  { format: "lz4", magic: [0x02, 0x21, 0x4c, 0x18] },
  { format: "bzip2", magic: [0x42, 0x5a, 0x68] },
  { format: "lzma", magic: [0x5d, 0x00, 0x00] },
  { format: "lzo", magic: [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a] },
];

/** No kernel image comes near this; a corrupt stream must not eat the host's memory. */
export const DEFAULT_MAX_OUTPUT = 1 << 30;

export function sniffCompression(data: Uint8Array): Compression | undefined {
  return MAGICS.find(({ magic }) => magic.every((b, i) => data[i] === b))?.format;
}

export interface DecompressOptions {
  /** What is being decompressed, for errors ("bzImage payload"). */
  readonly what?: string;
  /** File offset of data[0], so errors point into the file the user has. */
  readonly offset?: number;
  /**
   * The last 4 bytes are the little-endian uncompressed size, as arch/x86/boot/compressed
   * writes every payload (gzip's own ISIZE, size_append for the others): dropped before
   * decoding and checked against the result.
   */
  readonly sizeTrailer?: boolean;
  readonly maxOutput?: number;
}

export interface Decompressed {
  readonly format: Compression;
  readonly data: Uint8Array;
  readonly ms: number;
}

interface Ctx {
  /** "bzImage payload (xz)": what and format, for errors. */
  readonly what: string;
  readonly format: Compression;
  readonly offset: number;
  readonly max: number;
  /** The uncompressed size when a size trailer gave it. */
  readonly expected: number | undefined;
}

export async function decompress(input: Uint8Array, opts: DecompressOptions = {}): Promise<Decompressed> {
  const what = opts.what ?? "compressed data";
  const offset = opts.offset ?? 0;
  const format = sniffCompression(input);
  if (!format) {
    const head = [...input.subarray(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new DecodeError(what, offset, `no known compression magic (starts ${head || "empty"})`);
  }
  let data = input;
  let expected: number | undefined;
  if (opts.sizeTrailer) {
    if (input.length < 8) throw new DecodeError(what, offset, "too short for a stream and its size trailer");
    expected = readLe32(input, input.length - 4);
    if (format !== "gzip") data = input.subarray(0, input.length - 4);
  }
  const max = Math.min(opts.maxOutput ?? DEFAULT_MAX_OUTPUT, expected ?? Infinity);
  const ctx: Ctx = { what: `${what} (${format})`, format, offset, max, expected };
  const started = performance.now();
  const out = await DECODERS[format](data, ctx);
  const ms = performance.now() - started;
  if (expected !== undefined && out.length !== expected) {
    throw new DecodeError(
      ctx.what,
      offset + input.length - 4,
      `decoded ${out.length} bytes, the size trailer says ${expected}`,
    );
  }
  return { format, data: out, ms };
}

const DECODERS: Record<Compression, (data: Uint8Array, ctx: Ctx) => Promise<Uint8Array>> = {
  gzip: (d, c) => Promise.resolve(gunzip(d, c)),
  xz: (d, c) => liblzma(xzStream(d, c), c),
  lzma: (d, c) => liblzma(d, c),
  zstd: (d, c) => Promise.resolve(unzstd(d, c)),
  lz4: (d, c) => Promise.resolve(unlz4Legacy(d, c)),
  bzip2: (d, c) => hostTool(d, c, "bzip2", ["-dc"], "bzip2"),
  lzo: (d, c) => hostTool(d, c, "lzop", ["-dc"], "lzop"),
};

function readLe32(d: Uint8Array, at: number): number {
  return ((d[at] ?? 0) | ((d[at + 1] ?? 0) << 8) | ((d[at + 2] ?? 0) << 16) | ((d[at + 3] ?? 0) << 24)) >>> 0;
}

function corrupt(ctx: Ctx, at: number, e: unknown): DecodeError {
  const reason = e instanceof Error ? e.message : String(e);
  return new DecodeError(ctx.what, ctx.offset + at, `corrupt stream: ${reason}`);
}

/** Standalone gunzip (RFC 1952) exported for the IKCONFIG blob and Image.gz. */
export function gunzipExact(
  data: Uint8Array,
  what: string,
  offset = 0,
  max = DEFAULT_MAX_OUTPUT,
): Uint8Array {
  return gunzip(data, { what, format: "gzip", offset, max, expected: undefined });
}

/**
 * zlib's gunzip rejects any bytes after the member, so the header is parsed here, the deflate
 * body inflated raw (which reports how much it consumed) and the CRC32/ISIZE trailer checked.
 */
function gunzip(d: Uint8Array, ctx: Ctx): Uint8Array {
  if (d.length < 18) throw new DecodeError(ctx.what, ctx.offset, "too short for a gzip member");
  if (d[2] !== 8) throw new DecodeError(ctx.what, ctx.offset + 2, `compression method ${d[2]}, not deflate`);
  const flags = d[3] ?? 0;
  let at = 10;
  if (flags & 4) at += 2 + ((d[at] ?? 0) | ((d[at + 1] ?? 0) << 8)); // FEXTRA
  for (const bit of [8, 16]) {
    // FNAME, FCOMMENT: zero-terminated
    if (!(flags & bit)) continue;
    const end = d.indexOf(0, at);
    if (end < 0) throw new DecodeError(ctx.what, ctx.offset + at, "unterminated gzip header string");
    at = end + 1;
  }
  if (flags & 2) at += 2; // FHCRC
  if (at >= d.length) throw new DecodeError(ctx.what, ctx.offset + at, "gzip header runs past the end");
  let out: Buffer;
  let used: number;
  try {
    // `info: true` makes zlib return the engine too; its typings do not say so.
    const r = inflateRawSync(d.subarray(at), { info: true, maxOutputLength: ctx.max }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    out = r.buffer;
    used = r.engine.bytesWritten;
  } catch (e) {
    throw corrupt(ctx, at, e);
  }
  const trailer = at + used;
  if (trailer + 8 > d.length) throw new DecodeError(ctx.what, ctx.offset + trailer, "gzip member truncated");
  if (crc32(out) !== readLe32(d, trailer))
    throw new DecodeError(ctx.what, ctx.offset + trailer, "gzip CRC32 mismatch");
  if (out.length >>> 0 !== readLe32(d, trailer + 4)) {
    throw new DecodeError(ctx.what, ctx.offset + trailer + 4, "gzip ISIZE does not match the data");
  }
  return out;
}

/** An .xz stream ends with a footer whose last bytes are "YZ"; cut anything after it. */
function xzStream(d: Uint8Array, ctx: Ctx): Uint8Array {
  // Streams are multiples of 4 bytes; look back a little for the footer magic.
  for (let end = d.length; end >= Math.max(12, d.length - 64); end--) {
    if (end % 4 === 0 && d[end - 2] === 0x59 && d[end - 1] === 0x5a) return d.subarray(0, end);
  }
  throw new DecodeError(ctx.what, ctx.offset + d.length, "no xz stream footer near the end (truncated?)");
}

/** liblzma through lzma-native: .xz (with the x86 BCJ filter kernels use) and legacy .lzma. */
function liblzma(d: Uint8Array, ctx: Ctx): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    // The memory limit bounds the dictionary a corrupt header can ask for (kernels use 32-64 MiB).
    const stream = lzma.createDecompressor({ memlimit: 256 << 20, bufsize: 1 << 20 });
    const chunks: Buffer[] = [];
    let total = 0;
    // Past the limit the output is dropped but the stream still drains: aborting lzma-native
    // mid-stream is not safe (its cleanup races the native worker), and input bounds the work.
    stream.on("data", (chunk: Buffer) => {
      total += chunk.length;
      if (total <= ctx.max) chunks.push(chunk);
      else chunks.length = 0;
    });
    stream.on("error", (e: unknown) => reject(corrupt(ctx, 0, e)));
    stream.on("end", () => {
      if (total > ctx.max)
        reject(new DecodeError(ctx.what, ctx.offset, `decodes to more than ${ctx.max} bytes`));
      else resolve(Buffer.concat(chunks));
    });
    try {
      stream.end(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    } catch (e) {
      reject(corrupt(ctx, 0, e));
    }
  });
}

const ZSTD_MAX_WINDOW = 1 << 28;

/**
 * Length of the zstd frame at the start of `d` (RFC 8878 §3.1.1), so fzstd gets exactly the
 * frame. Also refuses sizes that would make fzstd allocate more than we allow.
 */
function zstdFrame(d: Uint8Array, ctx: Ctx): { length: number; contentSize: number | undefined } {
  const fail = (at: number, why: string) => new DecodeError(ctx.what, ctx.offset + at, why);
  const fhd = d[4];
  if (fhd === undefined) throw fail(4, "truncated zstd frame header");
  if (fhd & 8) throw fail(4, "reserved bit set in zstd frame header");
  const single = (fhd >> 5) & 1;
  const fcsFlag = fhd >> 6;
  const dictBytes = [0, 1, 2, 4][fhd & 3] ?? 0;
  const fcsBytes = fcsFlag === 0 ? single : 1 << fcsFlag;
  let at = 5;
  if (!single) {
    const wd = d[at++] ?? 0;
    const base = 2 ** (10 + (wd >> 3));
    // fzstd allocates the window up front; kernels use at most 2^27 (zstd -22 --ultra).
    if (base + (base / 8) * (wd & 7) > ZSTD_MAX_WINDOW)
      throw fail(5, "zstd window larger than any kernel uses");
  }
  at += dictBytes;
  let fcs = 0;
  for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + (d[at + i] ?? 0);
  if (fcsBytes === 2) fcs += 256;
  if (fcs > ctx.max) throw fail(at, `zstd frame claims ${fcs} bytes of content`);
  at += fcsBytes;
  for (;;) {
    if (at + 3 > d.length) throw fail(at, "zstd frame truncated (no last block)");
    const h = (d[at] ?? 0) | ((d[at + 1] ?? 0) << 8) | ((d[at + 2] ?? 0) << 16);
    const type = (h >> 1) & 3;
    if (type === 3) throw fail(at, "reserved zstd block type");
    at += 3 + (type === 1 ? 1 : h >>> 3); // RLE blocks carry one byte
    if (h & 1) break;
  }
  if (fhd & 4) at += 4; // content checksum
  if (at > d.length) throw fail(d.length, "zstd frame truncated");
  return { length: at, contentSize: fcsBytes ? fcs : undefined };
}

function unzstd(d: Uint8Array, ctx: Ctx): Uint8Array {
  const { length, contentSize } = zstdFrame(d, ctx);
  try {
    // The kernel compresses from a pipe, so the frame has no content size and fzstd would slide
    // its 128 MiB window once per block (27 s for a 50 MiB vmlinux). Given an output buffer of
    // the size the trailer names it decodes straight into it (4 s). It then returns the whole
    // buffer, so a short stream is not seen here: the ELF and IKCONFIG CRC checks catch that.
    // The ratio bound keeps a corrupt trailer from making us allocate a gigabyte.
    const expected = ctx.expected;
    if (contentSize === undefined && expected !== undefined && expected <= 64 * length) {
      return zstdDecompress(d.subarray(0, length), new Uint8Array(expected));
    }
    return zstdDecompress(d.subarray(0, length));
  } catch (e) {
    throw corrupt(ctx, 0, e);
  }
}

const LZ4_LEGACY_MAGIC = 0x184c2102;
const LZ4_LEGACY_BLOCK = 8 << 20;
/** LZ4_compressBound(8 MiB): no legacy block is larger. */
const LZ4_MAX_CHUNK = LZ4_LEGACY_BLOCK + Math.floor(LZ4_LEGACY_BLOCK / 255) + 16;

/** The legacy frame: magic, then blocks each prefixed by a LE u32 compressed size (lib/decompress_unlz4.c). */
function unlz4Legacy(d: Uint8Array, ctx: Ctx): Uint8Array {
  const scratch = new Uint8Array(LZ4_LEGACY_BLOCK);
  const parts: Uint8Array[] = [];
  let total = 0;
  let at = 4;
  while (at < d.length) {
    if (at + 4 > d.length) throw new DecodeError(ctx.what, ctx.offset + at, "lz4 block size truncated");
    const size = readLe32(d, at);
    if (size === LZ4_LEGACY_MAGIC) {
      at += 4; // concatenated streams
      continue;
    }
    if (size > LZ4_MAX_CHUNK || at + 4 + size > d.length) {
      // A lone trailing word is the uncompressed size the kernel's build appends.
      if (at + 4 === d.length) break;
      throw new DecodeError(ctx.what, ctx.offset + at, `lz4 block of ${size} bytes runs past the data`);
    }
    let n: number;
    try {
      n = lz4.decompressBlock(d, scratch, at + 4, size, 0);
    } catch (e) {
      throw corrupt(ctx, at, e);
    }
    // lz4js does not bounds-check: writes past the scratch are dropped, so n tells.
    if (!(n >= 0 && n <= scratch.length))
      throw new DecodeError(ctx.what, ctx.offset + at, "lz4 block overflows 8 MiB");
    total += n;
    if (total > ctx.max)
      throw new DecodeError(ctx.what, ctx.offset + at, `decodes to more than ${ctx.max} bytes`);
    parts.push(scratch.slice(0, n));
    at += 4 + size;
  }
  return Buffer.concat(parts, total);
}

/** Formats without a maintained JS decoder: the host's tool, or one sentence saying which to install. */
async function hostTool(
  d: Uint8Array,
  ctx: Ctx,
  tool: string,
  args: string[],
  pkg: string,
): Promise<Uint8Array> {
  const r = await execa(tool, args, {
    input: d,
    encoding: "buffer",
    reject: false,
    maxBuffer: ctx.max,
    timeout: 300_000,
  });
  if (r.exitCode === undefined && !r.timedOut && !r.isMaxBuffer) {
    const subject = ctx.what.replace(/ \([a-z0-9]+\)$/, "");
    throw new HarnessError(
      `${subject} is compressed with ${ctx.format}, not supported without the host tool ${tool}: apt-get install ${pkg}`,
    );
  }
  if (r.failed) {
    const why = r.isMaxBuffer
      ? `decodes to more than ${ctx.max} bytes`
      : Buffer.from(r.stderr).toString().trim();
    throw new DecodeError(ctx.what, ctx.offset, `${tool} failed: ${why || r.shortMessage}`);
  }
  return r.stdout;
}
