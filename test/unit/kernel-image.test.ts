// Kernel image inspection: vectors built here from the documented layouts (x86 boot.rst setup
// header, arm64 booting.rst Image header, EFI zboot, ELF), compressed the way the kernel's build
// compresses them, then every field, every refusal sentence, and fuzzing that shows hostile
// input only ever gives a report, a DecodeError or a HarnessError.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { execa } from "execa";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DecodeError, HarnessError } from "../../src/errors.js";
import { decompress, sniffCompression, type Compression } from "../../src/kernel/decompress.js";
import { findBanner, findIkconfig } from "../../src/kernel/ikconfig.js";
import {
  parseArm64Header,
  parseBzImageHeader,
  parseElfHeader,
  readKernelImage,
} from "../../src/kernel/image-header.js";
import {
  assertBootableKernel,
  formatReport,
  inspectKernel,
  inspectKernelBytes,
  reportToJson,
} from "../../src/kernel/inspect.js";

const RELEASE = "6.99.0-kho";
const VERSION = `${RELEASE} (builder@harness) #1 SMP PREEMPT_DYNAMIC Thu Jan  1 00:00:00 UTC 2026`;

const KHO_CONFIG = [
  "# Automatically generated file; DO NOT EDIT.",
  "CONFIG_KEXEC_HANDOVER=y",
  "CONFIG_KEXEC_HANDOVER_DEBUGFS=y",
  "CONFIG_LIVEUPDATE=y",
  "CONFIG_LIVEUPDATE_MEMFD=y",
  "CONFIG_TEST_KEXEC_HANDOVER=y",
  "CONFIG_LIVEUPDATE_TEST=m",
  "CONFIG_DEBUG_VM=y",
  "CONFIG_HUGETLBFS=y",
  "CONFIG_MODULES=y",
  "CONFIG_TRANSPARENT_HUGEPAGE=y",
  "CONFIG_IKCONFIG=y",
  'CONFIG_LOCALVERSION="-kho"',
  "CONFIG_NR_CPUS=64",
  "# CONFIG_KASAN is not set",
  "",
].join("\n");
const NO_KHO_CONFIG = KHO_CONFIG.replace("CONFIG_KEXEC_HANDOVER=y", "# CONFIG_KEXEC_HANDOVER is not set");

const ascii = (s: string) => Buffer.from(s, "latin1");
/** Deterministic filler that compresses like code rather than like zeros. */
function filler(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = i % 7 === 0 ? 0xe8 : (x >>> 24) & 0x3f;
  }
  return b;
}

/** What a kernel carries inside: the linux_banner and, when built with IKCONFIG, the gzipped config. */
function kernelBody(config: string | undefined): Buffer {
  return Buffer.concat([
    filler(3000, 1),
    ascii("%s version %s (%s)\n\0"), // linux_proc_banner: must not be taken for the banner
    ascii(`Linux version ${VERSION}\n\0`),
    filler(2000, 2),
    config === undefined
      ? Buffer.alloc(0)
      : Buffer.concat([ascii("IKCFG_ST"), gzipSync(config), ascii("IKCFG_ED")]),
    filler(1000, 3),
  ]);
}

/** An ELF64 little-endian vmlinux header (e_machine 62 x86_64, 183 arm64) followed by the body. */
function fakeVmlinux(config: string | undefined, machine = 62): Buffer {
  const h = Buffer.alloc(64);
  h.write("\x7fELF", 0, "latin1");
  h[4] = 2; // ELFCLASS64
  h[5] = 1; // ELFDATA2LSB
  h[6] = 1;
  h.writeUInt16LE(2, 0x10); // ET_EXEC
  h.writeUInt16LE(machine, 0x12);
  return Buffer.concat([h, kernelBody(config)]);
}

const sizeTrailer = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

async function tool(cmd: string, args: string[], input: Buffer): Promise<Buffer> {
  const r = await execa(cmd, args, { input, encoding: "buffer" });
  return Buffer.from(r.stdout);
}

/** The payload as arch/x86/boot/compressed/Makefile builds it: gzip alone, the others with size_append. */
async function compressLikeKbuild(format: Compression, data: Buffer): Promise<Buffer> {
  const withSize = (c: Buffer) => Buffer.concat([c, sizeTrailer(data.length)]);
  switch (format) {
    case "gzip":
      return gzipSync(data, { level: 9 });
    case "xz":
      return withSize(
        await tool("xz", ["--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c"], data),
      );
    case "zstd":
      return withSize(await tool("zstd", ["-q", "-19", "-c"], data));
    case "lz4":
      return withSize(await tool("lz4", ["-l", "-9", "-q", "-c"], data));
    case "lzma":
      return withSize(await tool("lzma", ["-9", "-c"], data));
    case "bzip2":
      return withSize(await tool("bzip2", ["-9", "-c"], data));
    case "lzo":
      // lzop is rarely installed: only the magic matters to the tests that use this.
      return withSize(Buffer.concat([ascii("\x89LZO\0\r\n\x1a\n"), filler(64, 9)]));
  }
}

interface BzOptions {
  setupSects?: number;
  xloadflags?: number;
  version?: string;
}

/** A bzImage per Documentation/arch/x86/boot.rst: setup sectors with the header, then the payload. */
function bzImage(payload: Buffer, o: BzOptions = {}): Buffer {
  const sects = o.setupSects ?? 4;
  const setup = Buffer.alloc(((sects || 4) + 1) * 512);
  setup[0x1f1] = sects;
  setup.writeUInt16LE(0xaa55, 0x1fe); // boot_flag
  setup.write("HdrS", 0x202, "latin1");
  setup.writeUInt16LE(0x020f, 0x206); // protocol 2.15
  setup.write(`${o.version ?? VERSION}\0`, 0x400, "latin1");
  setup.writeUInt16LE(0x400 - 0x200, 0x20e); // kernel_version, relative to 0x200
  setup[0x211] = 0x01; // LOADED_HIGH
  setup.writeUInt16LE(o.xloadflags ?? 0x1f, 0x236);
  setup.writeUInt32LE(0x200, 0x248); // payload_offset
  setup.writeUInt32LE(payload.length, 0x24c);
  setup.writeUInt32LE(0x2000000, 0x260); // init_size
  return Buffer.concat([setup, filler(0x200, 4), payload, filler(256, 5)]);
}

/** An arm64 Image per Documentation/arch/arm64/booting.rst (with the EFI stub's "MZ"). */
function arm64Image(config: string | undefined, flags = 0xa): Buffer {
  const body = kernelBody(config);
  const h = Buffer.alloc(64);
  h.write("MZ", 0, "latin1");
  h.writeUInt16LE(0x91005a4d >>> 16, 2);
  h.writeBigUInt64LE(0x0n, 0x08); // text_offset
  h.writeBigUInt64LE(BigInt(64 + body.length + 4096), 0x10); // image_size (with BSS)
  h.writeBigUInt64LE(BigInt(flags), 0x18);
  h.write("ARM\x64", 0x38, "latin1");
  h.writeUInt32LE(0x40, 0x3c); // PE header offset
  return Buffer.concat([h, body]);
}

/** arm64 EFI zboot (drivers/firmware/efi/libstub/zboot-header.S): "MZ", "zimg", payload offset/size, type. */
function zboot(payload: Buffer, type: string): Buffer {
  const h = Buffer.alloc(0x80);
  h.write("MZ", 0, "latin1");
  h.write("zimg", 4, "latin1");
  h.writeUInt32LE(0x80, 8);
  h.writeUInt32LE(payload.length, 12);
  h.write(`${type}\0`, 0x18, "latin1");
  return Buffer.concat([h, payload, filler(512, 6)]);
}

const FORMATS = ["gzip", "xz", "zstd", "lz4", "lzma", "bzip2"] as const;
const vectors = new Map<string, Buffer>();
const vec = (name: string): Buffer => {
  const v = vectors.get(name);
  if (!v) throw new Error(`no vector ${name}`);
  return v;
};
let dir = "";
const file = (name: string, data: Buffer): string => {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
};

let savedCacheDir: string | undefined;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kho-kernel-image-"));
  // assertBootableKernel remembers ready reports in the cache: keep this test's out of the user's.
  savedCacheDir = process.env.KHO_CACHE_DIR;
  process.env.KHO_CACHE_DIR = join(dir, "cache");
  const vmlinux = fakeVmlinux(KHO_CONFIG);
  await Promise.all(
    FORMATS.map(async (f) => vectors.set(`bzImage-${f}`, bzImage(await compressLikeKbuild(f, vmlinux)))),
  );
  vectors.set("bzImage-lzo", bzImage(await compressLikeKbuild("lzo", vmlinux)));
  vectors.set("bzImage-noikconfig", bzImage(gzipSync(fakeVmlinux(undefined))));
  vectors.set("bzImage-nokho", bzImage(gzipSync(fakeVmlinux(NO_KHO_CONFIG))));
  vectors.set("bzImage-i386", bzImage(gzipSync(fakeVmlinux(KHO_CONFIG, 3)), { xloadflags: 0 }));
  vectors.set("Image", arm64Image(KHO_CONFIG));
  vectors.set("Image.gz", gzipSync(arm64Image(KHO_CONFIG)));
  vectors.set("Image-nokho", arm64Image(NO_KHO_CONFIG));
  vectors.set("zboot-gzip", zboot(gzipSync(arm64Image(KHO_CONFIG)), "gzip"));
  vectors.set("zboot-zstd", zboot(await tool("zstd", ["-q", "-c"], arm64Image(KHO_CONFIG)), "zstd"));
  vectors.set("vmlinux-arm64", fakeVmlinux(KHO_CONFIG, 183));
}, 30_000);

afterAll(() => {
  if (savedCacheDir === undefined) delete process.env.KHO_CACHE_DIR;
  else process.env.KHO_CACHE_DIR = savedCacheDir;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("bzImage setup header", () => {
  it("reads every documented field", () => {
    const img = vec("bzImage-gzip");
    const h = parseBzImageHeader(img);
    expect(h).toEqual({
      setupSects: 4,
      setupSize: 2560,
      protocol: "2.15",
      kernelVersion: VERSION,
      loadflags: 1,
      xloadflags: {
        raw: 0x1f,
        kernel64: true,
        canLoadAbove4G: true,
        efiHandover32: true,
        efiHandover64: true,
        efiKexec: true,
      },
      payloadOffset: 0x200,
      payloadLength: img.readUInt32LE(0x24c),
      payloadFileOffset: 2560 + 0x200,
      initSize: 0x2000000,
    });
  });

  it("takes setup_sects 0 as 4 and tells i386 from x86_64 by XLF_KERNEL_64", async () => {
    expect(parseBzImageHeader(bzImage(Buffer.alloc(16, 1), { setupSects: 0 })).setupSize).toBe(2560);
    const img = await readKernelImage(vec("bzImage-i386"));
    expect(img.kind === "bzImage" && img.arch).toBe("i386");
  });

  it("names the offset of a truncated header or an out-of-file payload", () => {
    const img = vec("bzImage-gzip");
    expect(() => parseBzImageHeader(img.subarray(0, 0x208))).toThrow(DecodeError);
    const err = (() => {
      try {
        parseBzImageHeader(img.subarray(0, img.length - 300));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).offset).toBe(0x248);
    expect((err as DecodeError).message).toMatch(/payload .* is outside the file/);
  });
});

describe("arm64 Image header", () => {
  it("reads text_offset, image_size, flags and the EFI stub", () => {
    const img = vec("Image");
    expect(parseArm64Header(img)).toEqual({
      textOffset: 0,
      imageSize: img.readUInt32LE(0x10),
      flags: { raw: 0xa, bigEndian: false, pageSize: "4K", placeAnywhere: true },
      efiStub: true,
      peOffset: 0x40,
    });
  });

  it("refuses an EFI-stub Image shorter than its PE section table says", () => {
    const img = Buffer.alloc(0x200);
    img.write("MZ", 0, "latin1");
    img.write("ARM\x64", 0x38, "latin1");
    img.writeUInt32LE(0x40, 0x3c); // PE header offset
    img.write("PE\0\0", 0x40, "latin1");
    img.writeUInt16LE(1, 0x46); // NumberOfSections
    img.writeUInt16LE(0, 0x54); // SizeOfOptionalHeader: the section table follows at 0x58
    img.writeUInt32LE(0x100, 0x58 + 16); // SizeOfRawData
    img.writeUInt32LE(0x100, 0x58 + 20); // PointerToRawData: raw data ends at 0x200
    expect(parseArm64Header(img).efiStub).toBe(true);
    expect(() => parseArm64Header(img.subarray(0, 0x1c0))).toThrow(
      /truncated: its PE section table ends at byte 512, the file has 448/,
    );
  });

  it("decodes big-endian and 64K-page flags", () => {
    const f = parseArm64Header(arm64Image(undefined, 0x7)).flags;
    expect(f).toEqual({ raw: 7, bigEndian: true, pageSize: "64K", placeAnywhere: false });
    expect(parseArm64Header(arm64Image(undefined, 0x4)).flags.pageSize).toBe("16K");
  });

  it("unwraps Image.gz and EFI zboot (gzip and zstd)", async () => {
    for (const [name, kind] of [
      ["Image", "none"],
      ["Image.gz", "gzip"],
      ["zboot-gzip", "zboot"],
      ["zboot-zstd", "zboot"],
    ] as const) {
      const img = await readKernelImage(vec(name));
      expect(img.kind).toBe("arm64-image");
      if (img.kind !== "arm64-image") continue;
      expect(img.wrapper.kind).toBe(kind);
      expect(Buffer.from(img.image).equals(vec("Image"))).toBe(true);
    }
  });
});

describe("ELF and other files", () => {
  it("reports the ELF machine so a wrong arch is caught", () => {
    expect(parseElfHeader(vec("vmlinux-arm64"))).toEqual({
      bits: 64,
      endian: "little",
      type: 2,
      machine: 183,
      arch: "arm64",
    });
    const odd = fakeVmlinux(undefined, 243);
    expect(parseElfHeader(odd).arch).toBe("riscv64");
    odd.writeUInt16LE(4242, 0x12);
    expect(parseElfHeader(odd).arch).toBe("ELF machine 4242");
  });

  it("calls objects and programs without the banner not a kernel", async () => {
    const object = fakeVmlinux(KHO_CONFIG);
    object.writeUInt16LE(1, 0x10); // ET_REL, like kernel/configs.o
    expect(await readKernelImage(object)).toEqual({
      kind: "not-a-kernel",
      reason: "ELF file (e_type 1) without a Linux version banner",
    });
    const program = fakeVmlinux(undefined).subarray(0, 64);
    expect((await readKernelImage(program)).kind).toBe("not-a-kernel");
  });

  it("calls anything else not a kernel", async () => {
    expect((await readKernelImage(ascii("#!/bin/sh\necho hi\n"))).kind).toBe("not-a-kernel");
    expect((await readKernelImage(new Uint8Array(0))).kind).toBe("not-a-kernel");
    expect(await readKernelImage(gzipSync("just text"))).toEqual({
      kind: "not-a-kernel",
      reason: "gzip data that does not hold an arm64 Image",
    });
  });
});

describe("decompress", () => {
  it("sniffs every magic the kernel uses", () => {
    for (const f of [...FORMATS, "lzo"] as const) {
      const img = vec(`bzImage-${f}`);
      expect(sniffCompression(img.subarray(parseBzImageHeader(img).payloadFileOffset))).toBe(f);
    }
    expect(sniffCompression(ascii("plain"))).toBeUndefined();
  });

  it.each(FORMATS)("decodes a %s payload exactly, size trailer included", async (f) => {
    const vmlinux = fakeVmlinux(KHO_CONFIG);
    const out = await decompress(await compressLikeKbuild(f, vmlinux), { sizeTrailer: true });
    expect(out.format).toBe(f);
    expect(Buffer.from(out.data).equals(vmlinux)).toBe(true);
    expect(out.ms).toBeGreaterThanOrEqual(0);
  });

  it("checks the size trailer and names the offset of garbage", async () => {
    const good = await compressLikeKbuild("lz4", fakeVmlinux(KHO_CONFIG));
    const lying = Buffer.concat([good.subarray(0, -4), sizeTrailer(12345)]);
    await expect(decompress(lying, { sizeTrailer: true, what: "payload" })).rejects.toThrow(
      /the size trailer says 12345/,
    );
    await expect(decompress(ascii("no magic here"), { offset: 0x1000 })).rejects.toMatchObject({
      name: "DecodeError",
      offset: 0x1000,
    });
  });

  it("refuses lzo in one sentence when lzop is missing (or decodes/rejects it with lzop)", async () => {
    const err = await inspectKernelBytes(vec("bzImage-lzo"), "bzImage-lzo").catch((e: unknown) => e);
    expect(err instanceof HarnessError || err instanceof DecodeError).toBe(true);
    if (err instanceof HarnessError) {
      expect(err.message).toBe(
        "bzImage payload is compressed with lzo, not supported without the host tool lzop: apt-get install lzop",
      );
    }
  });
});

describe("IKCONFIG and banner", () => {
  it("parses the embedded config: y, m, n, strings and numbers", () => {
    const found = findIkconfig(fakeVmlinux(KHO_CONFIG));
    expect(found?.text).toBe(KHO_CONFIG);
    const c = found?.config;
    expect(c?.get("KEXEC_HANDOVER")).toBe("y");
    expect(c?.get("LIVEUPDATE_TEST")).toBe("m");
    expect(c?.get("KASAN")).toBe("n");
    expect(c?.get("LOCALVERSION")).toBe("-kho");
    expect(c?.get("NR_CPUS")).toBe("64");
    expect(findIkconfig(fakeVmlinux(undefined))).toBeUndefined();
  });

  it("finds the linux_banner, not the format string", () => {
    expect(findBanner(fakeVmlinux(undefined))).toEqual({
      release: RELEASE,
      banner: `Linux version ${VERSION}`,
    });
    expect(findBanner(ascii("nothing"))).toBeUndefined();
  });

  it("refuses a config stream cut before IKCFG_ED", () => {
    const body = fakeVmlinux(KHO_CONFIG);
    expect(() => findIkconfig(body.subarray(0, body.indexOf("IKCFG_ED") - 10))).toThrow(DecodeError);
  });
});

describe("inspectKernel", () => {
  it.each(FORMATS)("reports a %s bzImage fully", async (f) => {
    const r = await inspectKernel(file(`bzImage-${f}`, vec(`bzImage-${f}`)), { expectArch: "x86_64" });
    expect(r).toMatchObject({
      arch: "x86_64",
      format: "bzImage",
      compression: f,
      release: RELEASE,
      version: VERSION,
      configSource: { kind: "ikconfig" },
      problems: [],
      ready: true,
    });
    expect(r.decompressMs).toBeGreaterThanOrEqual(0);
    expect(r.config?.get("LIVEUPDATE")).toBe("y");
    expect(r.readiness.map((row) => [row.feature, row.status, row.required])).toEqual([
      ["KHO", "ok", true],
      ["KHO debugfs", "ok", false],
      ["LUO", "ok", false],
      ["LUO memfd", "ok", false],
      ["test options", "ok", false],
      ["DEBUG_VM", "ok", false],
      ["hugetlbfs", "ok", false],
      ["modules", "ok", false],
      ["THP", "ok", false],
    ]);
    expect(Object.fromEntries(r.details)).toMatchObject({ "boot protocol": "2.15", vmlinux: "ELF64 x86_64" });
  });

  it.each([
    ["Image", "arm64 Image", "none"],
    ["Image.gz", "arm64 Image.gz", "gzip"],
    ["zboot-zstd", "arm64 EFI zboot", "zstd"],
  ] as const)("reports an arm64 %s", async (name, format, compression) => {
    const r = await inspectKernel(file(name, vec(name)), { expectArch: "arm64" });
    expect(r).toMatchObject({ arch: "arm64", format, compression, release: RELEASE, ready: true });
    expect(Object.fromEntries(r.details)).toMatchObject({ flags: "little-endian, 4K pages" });
  });

  it("formats a table and plain JSON", async () => {
    const r = await inspectKernel(file("fmt-Image", vec("Image-nokho")));
    const text = formatReport(r);
    expect(text).toMatch(/^KHO +missing +required +CONFIG_KEXEC_HANDOVER=n$/m);
    expect(text).toMatch(
      /^test options +ok +optional +CONFIG_TEST_KEXEC_HANDOVER=y CONFIG_LIVEUPDATE_TEST=m$/m,
    );
    expect(text).toMatch(/verdict: not ready: .* has CONFIG_KEXEC_HANDOVER off/);
    const json = JSON.parse(JSON.stringify(reportToJson(r))) as Record<string, unknown>;
    expect(json).toMatchObject({
      arch: "arm64",
      release: RELEASE,
      ready: false,
      configSource: { kind: "ikconfig" },
      readiness: expect.arrayContaining([
        { feature: "KHO", status: "missing", required: true, options: { CONFIG_KEXEC_HANDOVER: "n" } },
      ]) as unknown,
    });
    expect((json.config as Record<string, string>).CONFIG_NR_CPUS).toBe("64");
  });
});

describe("refusals before a boot: one sentence each", () => {
  const refusal = async (path: string, arch: "x86_64" | "arm64") => {
    const e = await assertBootableKernel(path, arch).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HarnessError);
    return e as HarnessError;
  };

  it("accepts a KHO kernel of the right arch", async () => {
    await expect(assertBootableKernel(file("ok-bz", vec("bzImage-xz")), "x86_64")).resolves.toMatchObject({
      ready: true,
    });
  });

  it("remembers a ready report by the image's hash, and inspects again when that record is torn", async () => {
    const path = file("remembered-bz", vec("bzImage-gzip"));
    const records = join(dir, "cache", "inspect");
    const known = new Set(existsSync(records) ? readdirSync(records) : []);
    const first = await assertBootableKernel(path, "x86_64");
    const [name] = readdirSync(records).filter((n) => !known.has(n));
    expect(name).toMatch(/^[0-9a-f]{64}-x86_64\.json$/);
    const record = join(records, name ?? "");
    // A changed record is what comes back: the image was not decompressed again.
    const saved = JSON.parse(readFileSync(record, "utf8")) as { release: string };
    writeFileSync(record, JSON.stringify({ ...saved, release: "from-the-record" }));
    const again = await assertBootableKernel(path, "x86_64");
    expect(again).toMatchObject({ release: "from-the-record", path, ready: true });
    expect(again.config).toEqual(first.config);
    writeFileSync(record, "{ torn");
    expect((await assertBootableKernel(path, "x86_64")).release).toBe(first.release);
    // Other bytes, other record; a refusal is never remembered.
    await assertBootableKernel(file("nokho-bz", vec("bzImage-nokho")), "x86_64").catch(() => undefined);
    expect(readdirSync(records)).toHaveLength(known.size + 1);
  });

  it("not a kernel", async () => {
    const p = file("notes.txt", ascii("hello\n"));
    expect((await refusal(p, "x86_64")).message).toBe(
      `${p} is not a Linux kernel image (no bzImage HdrS or arm64 Image magic)`,
    );
  });

  it("wrong arch, from any header", async () => {
    const img = file("arm-Image", vec("Image"));
    expect((await refusal(img, "x86_64")).message).toBe(
      `${img} is an arm64 kernel, but --arch x86_64 was asked`,
    );
    const bz = file("x86-bz", vec("bzImage-gzip"));
    expect((await refusal(bz, "arm64")).message).toBe(
      `${bz} is an x86_64 kernel, but --arch arm64 was asked`,
    );
    const elf = file("vmlinux", vec("vmlinux-arm64"));
    expect((await refusal(elf, "x86_64")).message).toBe(
      `${elf} is an arm64 kernel, but --arch x86_64 was asked`,
    );
    const i386 = file("i386-bz", vec("bzImage-i386"));
    expect((await refusal(i386, "x86_64")).message).toBe(
      `${i386} is an i386 kernel, but --arch x86_64 was asked`,
    );
  });

  it("no IKCONFIG", async () => {
    const p = file("noik-bz", vec("bzImage-noikconfig"));
    expect((await refusal(p, "x86_64")).message).toBe(
      `cannot check ${p} (Linux ${RELEASE}) for KHO: it was built without CONFIG_IKCONFIG; enable CONFIG_IKCONFIG=y`,
    );
  });

  it("no KHO", async () => {
    const p = file("nokho-bz", vec("bzImage-nokho"));
    const e = await refusal(p, "x86_64");
    expect(e.message).toBe(
      `${p} (Linux ${RELEASE}) has CONFIG_KEXEC_HANDOVER off: enable CONFIG_KEXEC_HANDOVER=y (and LIVEUPDATE) — the harness's \`kho kernel build\` does this`,
    );
    expect(e.evidence).toEqual(["CONFIG_KEXEC_HANDOVER=n"]);
  });

  it("falls back to config-<release> next to an image without IKCONFIG, and says so", async () => {
    const boot = mkdtempSync(join(dir, "boot-"));
    const p = join(boot, `vmlinuz-${RELEASE}`);
    writeFileSync(p, vec("bzImage-noikconfig"));
    writeFileSync(join(boot, `config-${RELEASE}`), NO_KHO_CONFIG);
    const r = await inspectKernel(p);
    expect(r.configSource).toEqual({ kind: "file", path: join(boot, `config-${RELEASE}`) });
    expect(formatReport(r)).toContain(`config-${RELEASE} (the image has no IKCONFIG)`);
    const e = await refusal(p, "x86_64");
    expect(e.message).toMatch(/has CONFIG_KEXEC_HANDOVER off/);
    expect(e.evidence).toContain(
      `config read from ${join(boot, `config-${RELEASE}`)}: the image has no IKCONFIG`,
    );
    writeFileSync(join(boot, `config-${RELEASE}`), KHO_CONFIG);
    await expect(assertBootableKernel(p, "x86_64")).resolves.toMatchObject({ ready: true });
  });

  it("a missing file is one sentence too", async () => {
    const e = await refusal(join(dir, "nope"), "x86_64");
    expect(e.message).toBe(`cannot read kernel image ${join(dir, "nope")}: ENOENT`);
  });
});

describe("hostile input", () => {
  /** KHO_FUZZ_RUNS=20000 fuzzes deeper than the default quick pass. */
  const runs = (n: number) => Number(process.env.KHO_FUZZ_RUNS ?? n);
  const outcomes = new Map<string, number>();
  /** A report, a DecodeError or a HarnessError, within a deadline; anything else fails. */
  async function survives(bytes: Uint8Array): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("inspect hung for 5 s")), 5000);
    });
    try {
      await Promise.race([inspectKernelBytes(bytes, join(dir, "fuzz")), deadline]);
      outcomes.set("report", (outcomes.get("report") ?? 0) + 1);
    } catch (e) {
      if (!(e instanceof DecodeError || e instanceof HarnessError)) throw e;
      outcomes.set(e.name, (outcomes.get(e.name) ?? 0) + 1);
    } finally {
      clearTimeout(timer);
    }
  }

  it("random bytes", async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), survives), { numRuns: runs(200) });
  });

  it("random bytes behind each magic", async () => {
    const magics: [number, string][] = [
      [0x202, "HdrS"],
      [0x38, "ARM\x64"],
      [0, "\x7fELF"],
      [0, "\x1f\x8b\x08"],
      [0, "MZ\0\0zimg"],
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...magics),
        fc.uint8Array({ minLength: 0, maxLength: 2048 }),
        async ([at, m], tail) => {
          const b = Buffer.alloc(Math.max(tail.length, at + m.length));
          b.set(tail);
          b.write(m, at, "latin1");
          await survives(b);
        },
      ),
      { numRuns: runs(300) },
    );
  });

  it("mutations and truncations of every valid vector", async () => {
    const names = [...vectors.keys()].filter((n) => n !== "bzImage-lzo");
    const mutation = fc.record({
      name: fc.constantFrom(...names),
      edits: fc.array(fc.tuple(fc.oneof(fc.nat(0x300), fc.nat()), fc.nat(255)), {
        minLength: 1,
        maxLength: 6,
      }),
      cut: fc.option(fc.nat(), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(mutation, async ({ name, edits, cut }) => {
        const b = Buffer.from(vec(name));
        for (const [i, v] of edits) b[i % b.length] = v;
        await survives(cut === undefined ? b : b.subarray(0, cut % b.length));
      }),
      { numRuns: runs(300) },
    );
  }, 600_000);

  it("reached reports and both error kinds", () => {
    if (process.env.KHO_FUZZ_RUNS) console.log(Object.fromEntries(outcomes));
    for (const kind of ["report", "DecodeError", "HarnessError"])
      expect(outcomes.get(kind)).toBeGreaterThan(0);
  });
});
