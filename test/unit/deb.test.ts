import { link, mkdir, mkdtemp, readFile, rm, symlink, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DecodeError } from "../../src/errors.js";
import { extractFiles, listArMembers, readAr, readDebEntries, type DebEntry } from "../../src/debian/deb.js";

// dpkg-deb is a host tool of the apt steps (src/host/tools.ts, package dpkg, in every Debian);
// without it the packages it would build are not read, and the skip says so in its name.
const hasDpkgDeb = (await execa("dpkg-deb", ["--version"], { reject: false })).exitCode === 0;
const DPKG_DEB_SKIP = "dpkg-deb not installed (package dpkg; kho doctor --install installs it)";
if (!hasDpkgDeb) console.warn(`deb.test: packages built by dpkg-deb skipped: ${DPKG_DEB_SKIP}`);
const BUILT_BY_DPKG_DEB = `readDebEntries on packages built by dpkg-deb${hasDpkgDeb ? "" : ` (skipped: ${DPKG_DEB_SKIP})`}`;
const COMPRESSORS = [
  ["xz", "data.tar.xz"],
  ["zstd", "data.tar.zst"],
  ["gzip", "data.tar.gz"],
  ["none", "data.tar"],
] as const;
const HELLO = "hello from a test package\n";

async function collect(deb: string): Promise<DebEntry[]> {
  const out: DebEntry[] = [];
  for await (const e of readDebEntries(deb)) out.push(e);
  return out;
}

async function expectDecodeError(p: Promise<unknown>): Promise<void> {
  await expect(p).rejects.toBeInstanceOf(DecodeError);
}

describe.skipIf(!hasDpkgDeb)(BUILT_BY_DPKG_DEB, () => {
  let dir = "";
  const debs = new Map<string, string>();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "deb-test-"));
    const root = join(dir, "pkg");
    await mkdir(join(root, "DEBIAN"), { recursive: true });
    await writeFile(
      join(root, "DEBIAN/control"),
      "Package: kho-test\nVersion: 1.0\nArchitecture: all\nMaintainer: KHO harness <kho@example.invalid>\nDescription: test\n",
    );
    await mkdir(join(root, "usr/share/kho/empty"), { recursive: true });
    await writeFile(join(root, "usr/share/kho/hello.txt"), HELLO);
    await writeFile(join(root, "usr/share/kho/tool"), new Uint8Array([0, 1, 2, 255]));
    await chmod(join(root, "usr/share/kho/tool"), 0o755);
    await symlink("hello.txt", join(root, "usr/share/kho/link"));
    await link(join(root, "usr/share/kho/hello.txt"), join(root, "usr/share/kho/hard"));
    await Promise.all(
      COMPRESSORS.map(async ([z]) => {
        const deb = join(dir, `kho-test-${z}.deb`);
        await execa("dpkg-deb", ["--root-owner-group", `-Z${z}`, "--build", root, deb]);
        debs.set(z, deb);
      }),
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [z, member] of COMPRESSORS) {
    it(`reads ${member}`, async () => {
      const deb = debs.get(z) ?? "";
      expect((await listArMembers(deb)).map((m) => m.name)).toEqual([
        "debian-binary",
        expect.stringMatching(/^control\.tar/),
        member,
      ]);
      const entries = await collect(deb);
      const byPath = new Map(entries.map((e) => [e.path, e]));
      expect(byPath.get("usr/share/kho/empty")).toMatchObject({ type: "dir", mode: 0o755 });
      expect(byPath.get("usr/share/kho/link")).toMatchObject({ type: "symlink", linkname: "hello.txt" });
      const hello = byPath.get("usr/share/kho/hello.txt");
      const hard = byPath.get("usr/share/kho/hard");
      // tar stores the second name of a hard link as a link to the first
      const [first, second] =
        entries.indexOf(hello as DebEntry) < entries.indexOf(hard as DebEntry)
          ? [hello, hard]
          : [hard, hello];
      expect(first).toMatchObject({ type: "file", mode: 0o644, size: HELLO.length });
      expect(new TextDecoder().decode(first?.data)).toBe(HELLO);
      expect(second).toMatchObject({ type: "link", linkname: first?.path });
      expect([...(byPath.get("usr/share/kho/tool")?.data ?? [])]).toEqual([0, 1, 2, 255]);
      expect(byPath.get("usr/share/kho/tool")?.mode).toBe(0o755);
      expect(entries.every((e) => !e.path.startsWith(".") && !e.path.startsWith("/") && e.path !== "")).toBe(
        true,
      );
    });
  }

  it("extractFiles keeps only what is wanted", async () => {
    const got = await extractFiles(
      debs.get("xz") ?? "",
      (p) => p === "usr/share/kho/tool" || p === "usr/share/kho/link",
    );
    expect([...got.keys()].sort()).toEqual(["usr/share/kho/link", "usr/share/kho/tool"]);
    expect(got.get("usr/share/kho/tool")?.data?.length).toBe(4);
  });

  it("turns corrupt or truncated packages into DecodeError", async () => {
    for (const z of ["xz", "gzip"]) {
      const bytes = await readFile(debs.get(z) ?? "");
      const data = (await listArMembers(debs.get(z) ?? "")).at(-1);
      if (!data) throw new Error("no data member");
      const bad = Uint8Array.from(bytes);
      for (let i = data.offset + 40; i < data.offset + data.size - 8; i += 7) bad[i] = (bad[i] ?? 0) ^ 0xff;
      const corrupt = join(dir, `corrupt-${z}.deb`);
      await writeFile(corrupt, bad);
      await expectDecodeError(collect(corrupt));
      const truncated = join(dir, `truncated-${z}.deb`);
      await writeFile(truncated, bytes.subarray(0, data.offset + Math.floor(data.size / 2)));
      await expectDecodeError(collect(truncated));
    }
    const noData = join(dir, "no-data.deb");
    await writeFile(noData, "!<arch>\n");
    await expect(collect(noData)).rejects.toThrow(/no data\.tar member/);
  });
});

describe("ar reader", () => {
  function ar(members: [string, Uint8Array][]): Uint8Array {
    const parts: Uint8Array[] = [new TextEncoder().encode("!<arch>\n")];
    for (const [name, data] of members) {
      const h =
        name.padEnd(16) +
        "0".padEnd(12) +
        "0".padEnd(6) +
        "0".padEnd(6) +
        "100644".padEnd(8) +
        String(data.length).padEnd(10) +
        "`\n";
      parts.push(new TextEncoder().encode(h), data);
      if (data.length % 2) parts.push(new TextEncoder().encode("\n"));
    }
    return Buffer.concat(parts);
  }

  it("reads GNU and BSD names with 2-byte alignment", () => {
    const bsd = new Uint8Array([...new TextEncoder().encode("long-member-name.txt"), 9, 8, 7]);
    const members = readAr(
      ar([
        ["debian-binary/", new TextEncoder().encode("2.0\n")],
        ["odd/", new Uint8Array([1, 2, 3])],
        ["#1/20", bsd],
      ]),
    );
    expect(members.map((m) => [m.name, m.size, m.mode])).toEqual([
      ["debian-binary", 4, 0o100644],
      ["odd", 3, 0o100644],
      ["long-member-name.txt", 3, 0o100644],
    ]);
    expect(members[1]?.offset).toBe(8 + 60 + 4 + 60);
  });

  it("throws only DecodeError on junk", () => {
    const valid = ar([
      ["a/", new Uint8Array([1, 2, 3])],
      ["b/", new Uint8Array(10)],
    ]);
    const mutated = fc.tuple(fc.nat(), fc.nat(), fc.nat({ max: 255 })).map(([cut, at, v]) => {
      const b = valid.slice(0, 8 + (cut % (valid.length - 7)));
      const i = at % b.length;
      if (i >= 8) b[i] = v;
      return b;
    });
    const junk = fc
      .tuple(fc.boolean(), fc.uint8Array({ maxLength: 200 }))
      .map(([magic, rest]) =>
        Uint8Array.from([...(magic ? new TextEncoder().encode("!<arch>\n") : []), ...rest]),
      );
    fc.assert(
      fc.property(fc.oneof(mutated, junk), (bytes) => {
        try {
          readAr(bytes);
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
