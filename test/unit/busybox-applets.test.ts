import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { arch as hostArch, tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { extractFiles } from "../../src/debian/deb.js";
import { busyboxApplets } from "../../src/image/busybox.js";
import { cacheRoot } from "../../src/paths.js";

const table = (names: string[]) => Buffer.from(`\x7fELF junk\0${names.join("\0")}\0\0more junk`, "latin1");
const SOME = ["[", "[[", "acpid", "ash", "base64", "cat", "dmesg", "echo", "false", "grep", "head", "insmod"];
const ENOUGH = [
  ...SOME,
  "ls",
  "mkdir",
  "mount",
  "rm",
  "sed",
  "sh",
  "sleep",
  "tail",
  "true",
  "umount",
  "xargs",
];

describe("busybox applet table", () => {
  it("reads the NUL-separated names from the [ applet to the end of the table", () => {
    expect(busyboxApplets(table(ENOUGH))).toEqual(ENOUGH);
  });

  it("refuses what is not the table: too short, unsorted, no sh, no [ marker", () => {
    expect(busyboxApplets(table(SOME))).toBeUndefined();
    expect(busyboxApplets(table([...ENOUGH].reverse()))).toBeUndefined();
    expect(busyboxApplets(table(ENOUGH.filter((n) => n !== "sh")))).toBeUndefined();
    expect(busyboxApplets(Buffer.from("no table here"))).toBeUndefined();
  });

  // The real package the image is built from, when the cache has it: the table must give what
  // the binary itself lists (run only when this host can execute it).
  const debArch = hostArch() === "arm64" ? "arm64" : "amd64";
  const debDir = join(cacheRoot(), "debs", debArch);
  const deb = existsSync(debDir)
    ? readdirSync(debDir).find((f) => f.startsWith("busybox-static_"))
    : undefined;
  const dir = mkdtempSync(join(tmpdir(), "kho-busybox-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.skipIf(!deb)(`matches busybox --list of Debian's busybox-static (${deb ?? "not cached"})`, async () => {
    const files = await extractFiles(join(debDir, deb ?? ""), (p) => /(^|\/)bin\/busybox$/.test(p));
    const data = [...files.values()][0]?.data;
    expect(data).toBeDefined();
    const binary = join(dir, "busybox");
    writeFileSync(binary, data ?? new Uint8Array());
    chmodSync(binary, 0o755);
    const listed = (await execa(binary, ["--list"])).stdout.split("\n").filter(Boolean);
    expect(busyboxApplets(data ?? new Uint8Array())).toEqual(listed);
  });
});
