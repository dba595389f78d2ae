import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cachedNextKernelDisk,
  nextDiskFormat,
  userspacePlacement,
  writeNextKernelDisk,
} from "../../src/image/overlay.js";

const dir = mkdtempSync(join(tmpdir(), "kho-next-disk-"));
const savedCache = process.env.KHO_CACHE_DIR;
beforeAll(() => {
  process.env.KHO_CACHE_DIR = join(dir, "cache");
});
afterAll(() => {
  if (savedCache === undefined) delete process.env.KHO_CACHE_DIR;
  else process.env.KHO_CACHE_DIR = savedCache;
  rmSync(dir, { recursive: true, force: true });
});

// An odd size, so a disk that rounds or cuts the file shows it.
const kernel = join(dir, "bzImage");
writeFileSync(kernel, randomBytes(3 * 1048576 + 123));

async function ext4File(disk: string, name: string): Promise<Buffer> {
  const out = await execa("debugfs", ["-R", `cat /${name}`, disk], {
    encoding: "buffer",
    stripFinalNewline: false,
  });
  return Buffer.from(out.stdout);
}

describe("the next kernel's disk", () => {
  it("is romfs, else ext4, only when the booted kernel mounts it without modules", () => {
    const romfs: [string, string][] = [
      ["ROMFS_FS", "y"],
      ["ROMFS_BACKED_BY_BLOCK", "y"],
    ];
    expect(nextDiskFormat(new Map([...romfs, ["EXT4_FS", "y"]]))).toBe("romfs");
    expect(nextDiskFormat(new Map([["ROMFS_FS", "y"]]))).toBe("tar"); // romfs on MTD only
    expect(
      nextDiskFormat(
        new Map([
          ["ROMFS_FS", "m"],
          ["ROMFS_BACKED_BY_BLOCK", "y"],
          ["EXT4_FS", "y"],
        ]),
      ),
    ).toBe("ext4");
    expect(nextDiskFormat(new Map([["EXT4_FS", "y"]]))).toBe("ext4");
    expect(nextDiskFormat(new Map([["EXT4_FS", "m"]]))).toBe("tar");
    expect(nextDiskFormat(new Map())).toBe("tar");
  });

  it("romfs: the kernel and the guest's usr tree, as the kernel's romfs reads them", async () => {
    const tree = join(dir, "userspace-romfs");
    mkdirSync(join(tree, "usr/bin"), { recursive: true });
    writeFileSync(join(tree, "usr/bin/busybox"), "busybox bytes", { mode: 0o755 });
    const disk = join(dir, "next.romfs");
    await writeNextKernelDisk(kernel, disk, "romfs", { dir: tree, key: "r".repeat(16) });
    const img = readFileSync(disk);
    expect(img.subarray(0, 8).toString("latin1")).toBe("-rom1fs-");
    // The kernel's bytes follow its header: 16 bytes and the padded name "next-kernel".
    const at = img.indexOf(Buffer.from("next-kernel\0"));
    expect(at).toBeGreaterThan(0);
    expect(img.readUInt32BE(at - 8)).toBe(readFileSync(kernel).length);
    expect(img.subarray(at + 16, at + 16 + readFileSync(kernel).length).equals(readFileSync(kernel))).toBe(
      true,
    );
    expect(img.indexOf(Buffer.from("busybox bytes"))).toBeGreaterThan(at);
  });

  it("ext4: the kernel byte for byte, as e2fsprogs' debugfs reads it back", async () => {
    const disk = join(dir, "next.ext4");
    await writeNextKernelDisk(kernel, disk, "ext4");
    expect((await ext4File(disk, "next-kernel")).equals(readFileSync(kernel))).toBe(true);
  });

  it("puts userspace on the disk only when every kernel booting from it mounts it without modules", () => {
    const builtIn = new Map([
      ["EXT4_FS", "y"],
      ["VIRTIO_BLK", "y"],
    ]);
    const moduleBlk = new Map([
      ["EXT4_FS", "y"],
      ["VIRTIO_BLK", "m"],
    ]);
    expect(userspacePlacement("ext4", [builtIn, builtIn])).toBe("disk");
    expect(userspacePlacement("tar", [builtIn, builtIn])).toBe("initrd");
    // --next-kernel: the next kernel must reach its userspace too
    expect(userspacePlacement("ext4", [builtIn, moduleBlk])).toBe("initrd");
    expect(userspacePlacement("ext4", [builtIn, undefined])).toBe("initrd");
    // the booted kernel picked romfs: a next kernel with only ext4 cannot reach usr on it
    const romfs = new Map([
      ["ROMFS_FS", "y"],
      ["ROMFS_BACKED_BY_BLOCK", "y"],
      ["VIRTIO_BLK", "y"],
    ]);
    expect(userspacePlacement("romfs", [romfs, romfs])).toBe("disk");
    expect(userspacePlacement("romfs", [romfs, builtIn])).toBe("initrd");
  });

  it("ext4 with userspace: the guest's usr tree beside the kernel, symlinks kept as symlinks", async () => {
    const tree = join(dir, "userspace");
    mkdirSync(join(tree, "usr/bin"), { recursive: true });
    writeFileSync(join(tree, "usr/bin/busybox"), "busybox bytes", { mode: 0o755 });
    symlinkSync("busybox", join(tree, "usr/bin/sh"));
    symlinkSync("/init", join(tree, "usr/bin/kho-agent"));
    const disk = join(dir, "next-usr.ext4");
    await writeNextKernelDisk(kernel, disk, "ext4", { dir: tree, key: "k".repeat(16) });
    expect((await ext4File(disk, "next-kernel")).equals(readFileSync(kernel))).toBe(true);
    expect((await ext4File(disk, "usr/bin/busybox")).toString()).toBe("busybox bytes");
    const stat = (name: string) => execa("debugfs", ["-R", `stat /${name}`, disk]).then((r) => r.stdout);
    expect(await stat("usr/bin/sh")).toMatch(/Type: symlink[\s\S]*Fast link dest: "busybox"/);
    expect(await stat("usr/bin/kho-agent")).toMatch(/Fast link dest: "\/init"/);
    expect(await stat("usr/bin/busybox")).toMatch(/Mode:\s+0755/);
    const cached = await cachedNextKernelDisk(kernel, "ext4", { dir: tree, key: "k".repeat(16) });
    expect(cached).not.toBe(await cachedNextKernelDisk(kernel, "ext4"));
    await expect(cachedNextKernelDisk(kernel, "tar", { dir: tree, key: "k".repeat(16) })).rejects.toThrow(
      /only on a mountable next-kernel disk/,
    );
  });

  it("tar: the kernel byte for byte, and nothing else", async () => {
    const disk = join(dir, "next.tar");
    await writeNextKernelDisk(kernel, disk, "tar");
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
    expect([...files.keys()]).toEqual(["next-kernel"]);
    expect(files.get("next-kernel")?.equals(readFileSync(kernel))).toBe(true);
  });

  it("is cached by the kernel's contents: the same disk again, a new one for new bytes", async () => {
    const first = await cachedNextKernelDisk(kernel, "ext4");
    const written = statSync(first).mtimeMs;
    expect(await cachedNextKernelDisk(kernel, "ext4")).toBe(first);
    expect(statSync(first).mtimeMs).toBe(written);
    const other = join(dir, "other-bzImage");
    writeFileSync(other, randomBytes(1048576));
    const second = await cachedNextKernelDisk(other, "ext4");
    expect(second).not.toBe(first);
    expect((await ext4File(second, "next-kernel")).equals(readFileSync(other))).toBe(true);
    expect(await cachedNextKernelDisk(kernel, "tar")).not.toBe(first);
  });
});
