import { lstat, mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DecodeError } from "../../src/errors.js";
import { CpioWriter, cpioKind, readCpio, type CpioEntry } from "../../src/image/cpio.js";

// GNU cpio is a host tool of the kernel build (src/host/tools.ts), so `kho doctor --install`
// installs it; without it the cross-check is skipped with the reason in its name.
const cpioVersion = await execa("cpio", ["--version"], { reject: false });
const hasCpio = cpioVersion.exitCode === 0 && /GNU cpio/.test(cpioVersion.stdout);
const CPIO_SKIP = "GNU cpio not installed (kho doctor --install installs it)";
if (!hasCpio) console.warn(`cpio.test: cross-check against GNU cpio skipped: ${CPIO_SKIP}`);
const isRoot = process.getuid?.() === 0;

function sample(): CpioWriter {
  return new CpioWriter()
    .dir("etc", 0o750)
    .file("/etc/hostname", "guest\n")
    .file("usr/bin/kho-agent", new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]), 0o755)
    .symlink("bin", "usr/bin")
    .device("dev/console", "c", 5, 1)
    .device("dev/vda", "b", 254, 0, 0o660)
    .file("init", "#!/bin/sh\nexec /usr/bin/kho-agent info\n", 0o755);
}

describe("CpioWriter", () => {
  it("creates parents once, in order, and numbers inodes in order", () => {
    const records = readCpio(sample().finish());
    expect(records.map((r) => r.name)).toEqual([
      "etc",
      "etc/hostname",
      "usr",
      "usr/bin",
      "usr/bin/kho-agent",
      "bin",
      "dev",
      "dev/console",
      "dev/vda",
      "init",
    ]);
    expect(records.map((r) => r.ino)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const byName = new Map(records.map((r) => [r.name, r]));
    expect(byName.get("etc")?.mode).toBe(0o040750);
    expect(byName.get("usr")?.mode).toBe(0o040755);
    expect(byName.get("usr/bin/kho-agent")?.mode).toBe(0o100755);
    expect(new TextDecoder().decode(byName.get("bin")?.data)).toBe("usr/bin");
    expect(byName.get("dev/vda")).toMatchObject({ mode: 0o060660, rdevMajor: 254, rdevMinor: 0 });
    expect(cpioKind(byName.get("dev/console")?.mode ?? 0)).toBe("char");
    for (const r of records) expect([r.uid, r.gid, r.mtime]).toEqual([0, 0, 0]);
  });

  it("is deterministic and aligns every record to 4 bytes", () => {
    const a = sample().finish();
    expect(sample().finish()).toEqual(a);
    expect(a.length % 4).toBe(0);
    for (const r of readCpio(a)) expect(r.offset % 4).toBe(0);
    expect(new TextDecoder().decode(a.subarray(0, 6))).toBe("070701");
    expect(new TextDecoder("latin1").decode(a)).toContain("TRAILER!!!\0");
  });

  it("lets an explicit dir() refine an implicit parent and refuses duplicates", () => {
    const w = new CpioWriter({ mtime: 1234 }).file("a/b/c", "x").dir("a", 0o700);
    expect(w.list().map((e) => e.path)).toEqual(["a", "a/b", "a/b/c"]);
    const recs = readCpio(w.finish());
    expect(recs[0]).toMatchObject({ name: "a", mode: 0o040700, mtime: 1234 });
    expect(() => w.file("a/b/c", "y")).toThrow(/already in the archive/);
    expect(() => w.file("a/b/c/d", "y")).toThrow(/not a directory/);
    expect(() => w.file("../x", "y")).toThrow(/not inside/);
    expect(() => w.file("x", "y", 0o100644)).toThrow(/permission mask/);
  });
});

describe.skipIf(!hasCpio)(`GNU cpio agrees${hasCpio ? "" : ` (skipped: ${CPIO_SKIP})`}`, () => {
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cpio-test-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("lists it with cpio -itv", async () => {
    const r = await execa("cpio", ["-itv", "--quiet"], { input: Buffer.from(sample().finish()) });
    const lines = r.stdout.split("\n");
    expect(lines).toHaveLength(10);
    expect(lines.find((l) => l.endsWith(" bin -> usr/bin"))).toMatch(/^lrwxrwxrwx/);
    expect(lines.find((l) => l.endsWith(" dev/console"))).toMatch(/^crw-------.* 5,\s+1 /);
    expect(lines.find((l) => l.endsWith(" dev/vda"))).toMatch(/^brw-rw----.* 254,\s+0 /);
    expect(lines.find((l) => l.endsWith(" etc"))).toMatch(/^drwxr-x---/);
    expect(lines.find((l) => l.endsWith(" usr/bin/kho-agent"))).toMatch(/^-rwxr-xr-x\s+1 root\s+root\s+7 /);
  });

  it("extracts the same bytes with cpio -idm", async () => {
    const out = join(dir, "x");
    const archive = sample();
    // device nodes need root; without it, extract the rest
    const input = isRoot ? archive.finish() : archive.list().filter((e) => e.kind !== "device");
    const bytes = input instanceof Uint8Array ? input : rebuild(input);
    await execa("cpio", ["-idm", "--quiet", "--no-absolute-filenames", "-D", out], {
      input: Buffer.from(bytes),
    });
    expect(await readFile(join(out, "etc/hostname"), "utf8")).toBe("guest\n");
    expect([...(await readFile(join(out, "usr/bin/kho-agent")))]).toEqual([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]);
    expect((await lstat(join(out, "usr/bin/kho-agent"))).mode & 0o7777).toBe(0o755);
    expect(await readlink(join(out, "bin"))).toBe("usr/bin");
    expect((await lstat(join(out, "init"))).mtimeMs).toBe(0);
    if (isRoot) {
      const st = await lstat(join(out, "dev/vda"));
      expect(st.isBlockDevice()).toBe(true);
      expect([Math.floor(st.rdev / 256) & 0xfff, st.rdev & 0xff]).toEqual([254, 0]);
    }
  });
});

function rebuild(entries: CpioEntry[]): Uint8Array {
  const w = new CpioWriter();
  for (const e of entries) {
    if (e.kind === "dir") w.dir(e.path, e.mode);
    else if (e.kind === "file") w.file(e.path, e.data, e.mode);
    else if (e.kind === "symlink") w.symlink(e.path, e.target);
    else w.device(e.path, e.type, e.major, e.minor, e.mode);
  }
  return w.finish();
}

describe("cpio properties", () => {
  const segment = fc.stringMatching(/^[a-z0-9_.-]{1,12}$/).filter((s) => s !== "." && s !== "..");
  const entry: fc.Arbitrary<CpioEntry> = fc.oneof(
    fc.record({
      kind: fc.constant("file" as const),
      path: segment,
      mode: fc.integer({ min: 0, max: 0o7777 }),
      data: fc.uint8Array({ maxLength: 300 }),
    }),
    fc.record({
      kind: fc.constant("dir" as const),
      path: segment,
      mode: fc.integer({ min: 0, max: 0o7777 }),
    }),
    fc.record({
      kind: fc.constant("symlink" as const),
      path: segment,
      target: fc.string({ minLength: 1, maxLength: 40 }),
    }),
    fc.record({
      kind: fc.constant("device" as const),
      path: segment,
      type: fc.constantFrom("c" as const, "b" as const),
      major: fc.nat({ max: 4095 }),
      minor: fc.nat({ max: 0xfffff }),
      mode: fc.integer({ min: 0, max: 0o7777 }),
    }),
  );

  it("reads back what it wrote", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(entry, { selector: (e) => e.path, maxLength: 12 }),
        fc.array(segment, { maxLength: 3 }),
        (entries, prefix) => {
          const placed = entries.map((e) => ({ ...e, path: [...prefix, e.path].join("/") }));
          const recs = readCpio(rebuild(placed));
          // parents exist only once an entry needs them
          const parents = placed.length ? prefix.map((_, i) => prefix.slice(0, i + 1).join("/")) : [];
          expect(recs.map((r) => r.name)).toEqual([...parents, ...placed.map((e) => e.path)]);
          for (const e of placed) {
            const r = recs.find((x) => x.name === e.path);
            if (!r) throw new Error(`missing ${e.path}`);
            if (e.kind === "file") expect([r.mode, [...r.data]]).toEqual([0o100000 | e.mode, [...e.data]]);
            if (e.kind === "dir") expect(r.mode).toBe(0o040000 | e.mode);
            if (e.kind === "symlink") expect(new TextDecoder().decode(r.data)).toBe(e.target);
            if (e.kind === "device")
              expect([r.rdevMajor, r.rdevMinor, cpioKind(r.mode)]).toEqual([
                e.major,
                e.minor,
                e.type === "c" ? "char" : "block",
              ]);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("throws only DecodeError on junk", () => {
    const header = fc.constantFrom("070701", "070702", "07070", "");
    const junk = fc.tuple(header, fc.uint8Array({ maxLength: 400 }), fc.boolean()).map(([h, bytes, hexy]) => {
      const body = hexy ? Uint8Array.from(bytes, (b) => "0123456789abcdef".charCodeAt(b % 16)) : bytes;
      return Uint8Array.from([...new TextEncoder().encode(h), ...body]);
    });
    const truncated = fc.tuple(fc.nat(), fc.nat()).map(([cut, flip]) => {
      const a = sample().finish();
      const b = a.slice(0, cut % a.length);
      const i = flip % Math.max(b.length, 1);
      if (i < b.length) b[i] = (b[i] ?? 0) ^ 0x5a;
      return b;
    });
    fc.assert(
      fc.property(fc.oneof(junk, truncated), (bytes) => {
        try {
          readCpio(bytes);
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
