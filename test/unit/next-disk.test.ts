import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import tar from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { nextDiskFormat, writeNextKernelDisk } from "../../src/image/overlay.js";

const dir = mkdtempSync(join(tmpdir(), "kho-next-disk-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Odd sizes, so a disk that rounds or cuts a file shows it.
const kernel = join(dir, "bzImage");
const initrd = join(dir, "initrd.cpio");
writeFileSync(kernel, randomBytes(3 * 1048576 + 123));
writeFileSync(initrd, randomBytes(777_777));

describe("the next kernel's disk", () => {
  it("is ext4 only when the booted kernel has ext4 built in", () => {
    expect(nextDiskFormat(new Map([["EXT4_FS", "y"]]))).toBe("ext4");
    expect(nextDiskFormat(new Map([["EXT4_FS", "m"]]))).toBe("tar");
    expect(nextDiskFormat(new Map())).toBe("tar");
  });

  it("ext4: both files byte for byte, as e2fsprogs' debugfs reads them back", async () => {
    const disk = join(dir, "next.ext4");
    await writeNextKernelDisk({ kernel, initrd }, disk, "ext4");
    for (const [name, source] of [
      ["next-kernel", kernel],
      ["next-initrd", initrd],
    ] as const) {
      const out = await execa("debugfs", ["-R", `cat /${name}`, disk], {
        encoding: "buffer",
        stripFinalNewline: false,
      });
      expect(Buffer.compare(Buffer.from(out.stdout), readFileSync(source))).toBe(0);
    }
  });

  it("tar: both files byte for byte", async () => {
    const disk = join(dir, "next.tar");
    await writeNextKernelDisk({ kernel, initrd }, disk, "tar");
    const files = new Map<string, Buffer>();
    const extract = tar.extract();
    extract.on("entry", (header, stream, next) => {
      const parts: Buffer[] = [];
      stream.on("data", (c: unknown) => parts.push(c as Buffer));
      stream.on("end", () => {
        files.set(header.name, Buffer.concat(parts));
        next();
      });
    });
    const done = new Promise<void>((resolve) => extract.on("finish", () => resolve()));
    extract.end(readFileSync(disk));
    await done;
    expect(files.get("next-kernel")?.equals(readFileSync(kernel))).toBe(true);
    expect(files.get("next-initrd")?.equals(readFileSync(initrd))).toBe(true);
  });
});
