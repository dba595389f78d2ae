import { describe, expect, it } from "vitest";
import { splitTree, type TreeEntry } from "../../src/image/initramfs.js";

const agent = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]);
const tree: TreeEntry[] = [
  { kind: "dir", path: "dev", mode: 0o755 },
  { kind: "dir", path: "boot", mode: 0o755 },
  { kind: "dir", path: "usr/bin", mode: 0o755 },
  { kind: "dir", path: "usr/lib", mode: 0o755 },
  { kind: "char-device", path: "dev/console", major: 5, minor: 1, mode: 0o600 },
  { kind: "symlink", path: "bin", target: "usr/bin" },
  { kind: "file", path: "usr/bin/busybox", data: "bb", mode: 0o755 },
  { kind: "file", path: "usr/lib/libc.so.6", data: "libc", mode: 0o644 },
  { kind: "symlink", path: "usr/bin/sh", target: "busybox" },
  { kind: "file", path: "usr/bin/kho-agent", data: agent, mode: 0o755 },
  { kind: "symlink", path: "init", target: "usr/bin/kho-agent" },
  { kind: "file", path: "etc/passwd", data: "root:x:0:0:root:/root:/bin/sh\n", mode: 0o644 },
];
const paths = (es: readonly TreeEntry[]) => es.map((e) => e.path);

describe("the guest tree split between initrd and disk", () => {
  it("initrd placement keeps everything in the image", () => {
    const { image, disk } = splitTree(tree, "initrd");
    expect(image).toEqual(tree);
    expect(disk).toEqual([]);
  });

  it("disk placement moves usr/ to the disk and keeps the agent as /init", () => {
    const { image, disk } = splitTree(tree, "disk");
    expect(paths(image).filter((p) => p.startsWith("usr/"))).toEqual([]);
    expect(image.find((e) => e.path === "init")).toEqual({
      kind: "file",
      path: "init",
      data: agent,
      mode: 0o755,
    });
    expect(image.find((e) => e.path === "usr")).toEqual({ kind: "symlink", path: "usr", target: "boot/usr" });
    expect(paths(image)).toEqual(expect.arrayContaining(["dev", "boot", "dev/console", "bin", "etc/passwd"]));
    expect(disk.find((e) => e.path === "usr/bin/kho-agent")).toEqual({
      kind: "symlink",
      path: "usr/bin/kho-agent",
      target: "/init",
    });
    expect(paths(disk)).toEqual([
      "usr",
      "usr/bin",
      "usr/lib",
      "usr/bin/busybox",
      "usr/lib/libc.so.6",
      "usr/bin/sh",
      "usr/bin/kho-agent",
    ]);
    // every entry lands once: the /init link gives way to the agent itself, the agent on the
    // disk to a link to /init; new are the image's usr link and the disk's usr directory
    expect(image.length + disk.length).toBe(tree.length + 2);
  });

  it("without applet links (no /bin/sh) everything stays in the image: the init would make them on a read-only disk", () => {
    const noLinks = tree.filter((e) => e.path !== "usr/bin/sh");
    expect(splitTree(noLinks, "disk")).toEqual({ image: noLinks, disk: [] });
  });
});
