import { readFileSync } from "node:fs";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { fuzzDecodeErrorsOnly } from "./helpers/fuzz.js";
import { readDynamic } from "../../src/elf/needed.js";
import { neededClosure, type UserspaceFile } from "../../src/image/userspace.js";

/** A minimal ELF64 LE shared object: one PT_LOAD over the file at vaddr 0x1000, then PT_DYNAMIC. */
function elfWithNeeded(needed: readonly string[]): Uint8Array {
  const strtab = Buffer.from(`\0${needed.join("\0")}\0`);
  const dynEntries = needed.length + 3; // NEEDED..., STRTAB, STRSZ, NULL
  const dynOff = 64 + 2 * 56;
  const strOff = dynOff + dynEntries * 16;
  const b = Buffer.alloc(strOff + strtab.length);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // little-endian
  b.writeUInt16LE(3, 16); // ET_DYN
  b.writeBigUInt64LE(64n, 32); // e_phoff
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(2, 56);
  const phdr = (i: number, type: number, off: number, vaddr: number, size: number) => {
    const at = 64 + i * 56;
    b.writeUInt32LE(type, at);
    b.writeBigUInt64LE(BigInt(off), at + 8);
    b.writeBigUInt64LE(BigInt(vaddr), at + 16);
    b.writeBigUInt64LE(BigInt(size), at + 32);
  };
  phdr(0, 1, 0, 0x1000, b.length);
  phdr(1, 2, dynOff, 0x1000 + dynOff, dynEntries * 16);
  let at = dynOff;
  const dyn = (tag: number, value: number) => {
    b.writeBigInt64LE(BigInt(tag), at);
    b.writeBigUInt64LE(BigInt(value), at + 8);
    at += 16;
  };
  let name = 1;
  for (const n of needed) {
    dyn(1, name);
    name += n.length + 1;
  }
  dyn(5, 0x1000 + strOff);
  dyn(10, strtab.length);
  dyn(0, 0);
  strtab.copy(b, strOff);
  return b;
}

async function readelfNeeded(path: string): Promise<string[] | undefined> {
  const r = await execa("readelf", ["-d", path], { reject: false });
  if (r.exitCode !== 0) return undefined;
  return [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1] ?? "");
}

describe("DT_NEEDED", () => {
  it("reads a synthetic object, and a static executable has none", () => {
    expect(readDynamic(elfWithNeeded(["libz.so.1", "libc.so.6"]))).toEqual({
      needed: ["libz.so.1", "libc.so.6"],
      dynamic: true,
    });
    const noPhdrs = elfWithNeeded([]).slice(0, 64);
    noPhdrs.fill(0, 56, 58); // e_phnum 0
    expect(readDynamic(noPhdrs)).toEqual({ needed: [], dynamic: false });
  });

  it("agrees with binutils' readelf on the host's own binaries", async (ctx) => {
    const paths = ["/usr/bin/ls", "/usr/bin/ssh-keygen", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/bin/bash"];
    let compared = 0;
    for (const path of paths) {
      const bytes = (() => {
        try {
          return readFileSync(path);
        } catch {
          return undefined;
        }
      })();
      const expected = bytes && (await readelfNeeded(path));
      if (!bytes || !expected) continue;
      expect(readDynamic(bytes).needed, path).toEqual(expected);
      compared++;
    }
    if (compared === 0) ctx.skip("no readelf or none of the sample binaries on this host");
  });

  it("fuzz: damaged headers, program headers and dynamic sections give DecodeErrors only", () => {
    const blob = elfWithNeeded(["libtomcrypt.so.1", "libtommath.so.1", "libc.so.6"]);
    fuzzDecodeErrorsOnly(blob, readDynamic, 3000);
  });
});

describe("the guest's library closure", () => {
  const lib = "usr/lib/x86_64-linux-gnu";
  const file = (path: string, needed: string[]): [string, UserspaceFile] => [
    path,
    { path, kind: "file", mode: 0o755, data: elfWithNeeded(needed) },
  ];
  const link = (path: string, target: string): [string, UserspaceFile] => [
    path,
    { path, kind: "symlink", mode: 0o777, target },
  ];

  it("keeps what the programs need, through symlinks, plus the loader and dlopen()ed ones", () => {
    const files = new Map([
      file("usr/bin/busybox", []),
      file("usr/sbin/dropbear", ["libz.so.1", "libc.so.6"]),
      link(`${lib}/libz.so.1`, "libz.so.1.3.2"),
      file(`${lib}/libz.so.1.3.2`, ["libc.so.6"]),
      file(`${lib}/libc.so.6`, ["ld-linux-x86-64.so.2"]),
      file(`${lib}/ld-linux-x86-64.so.2`, []),
      link("usr/lib64/ld-linux-x86-64.so.2", `../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`),
      file(`${lib}/libgcc_s.so.1`, ["libc.so.6"]),
      file(`${lib}/libnss_files.so.2`, ["libc.so.6"]),
      file(`${lib}/libm.so.6`, ["libc.so.6"]),
      file(`${lib}/libmvec.so.1`, ["libm.so.6"]),
      file(`${lib}/libresolv.so.2`, ["libc.so.6"]),
    ]);
    expect([...neededClosure(files)].sort()).toEqual(
      [
        "usr/bin/busybox",
        "usr/sbin/dropbear",
        `${lib}/libz.so.1`,
        `${lib}/libz.so.1.3.2`,
        `${lib}/libc.so.6`,
        `${lib}/ld-linux-x86-64.so.2`,
        "usr/lib64/ld-linux-x86-64.so.2",
        `${lib}/libgcc_s.so.1`,
        `${lib}/libnss_files.so.2`,
      ].sort(),
    );
  });
});
