import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { DecodeError } from "../../src/errors.js";
import {
  type FdtNode,
  type FdtNodeInput,
  findNode,
  parseFdt,
  propCells,
  propLeU64,
  propString,
  propStringList,
  propU32,
  propU64,
} from "../../src/fdt/reader.js";
import { beU64, cells, fdtNode, leU64, strings, writeFdt } from "../../src/fdt/writer.js";

const FIXTURE = fileURLToPath(new URL("../fixtures/qemu-virt-arm64.dtb", import.meta.url));
const qemuBlob = new Uint8Array(readFileSync(FIXTURE));

type Canon = [string, [string, string][], Canon[]];

/** A comparable image of a tree: names, property names and bytes, child order. */
function canon(node: FdtNodeInput): Canon {
  const props = [...node.props].map(([k, v]): [string, string] => [k, Buffer.from(v).toString("hex")]);
  return [node.name, props, node.children.map(canon)];
}

function expectSameTree(actual: FdtNodeInput, expected: FdtNodeInput): void {
  expect(canon(actual)).toEqual(canon(expected));
}

function expectDecodeError(fn: () => unknown, reason: RegExp, offset?: number): DecodeError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DecodeError);
  const err = caught as DecodeError;
  expect(err.reason).toMatch(reason);
  if (offset !== undefined) expect(err.offset).toBe(offset);
  return err;
}

describe("FDT writer/reader round trip", () => {
  const tree = fdtNode(
    "",
    { compatible: strings("kho-v4"), "#size-cells": cells(2), empty: new Uint8Array() },
    [
      fdtNode("memory@40000000", { reg: cells(0, 0x40000000, 0, 0x8000000), device_type: strings("memory") }),
      fdtNode("chosen", { "linux,kho-fdt": beU64(0x4321_0000n), bootargs: strings("kho=on", "x") }, [
        fdtNode("deeper", { "blob-size": leU64(233n) }),
      ]),
    ],
  );

  it("writes a v17 blob that reads back identically, with header and reservations", () => {
    const blob = writeFdt(tree, { reservations: [{ address: 0x1000n, size: 0x2000n }], bootCpuidPhys: 3 });
    const fdt = parseFdt(blob);
    expect(fdt.header).toMatchObject({
      version: 17,
      lastCompVersion: 16,
      bootCpuidPhys: 3,
      totalSize: blob.length,
    });
    expect(fdt.reservations).toEqual([{ address: 0x1000n, size: 0x2000n }]);
    expectSameTree(fdt.root, tree);
    expect(findNode(fdt.root, "/chosen/deeper")?.path).toBe("/chosen/deeper");
    expect(findNode(fdt.root, "/")?.path).toBe("/");
    expect(findNode(fdt.root, "/nope")).toBeUndefined();
  });

  it("decodes typed property values", () => {
    const { root } = parseFdt(writeFdt(tree));
    const chosen = findNode(root, "/chosen") as FdtNode;
    expect(propCells(findNode(root, "/memory@40000000") as FdtNode, "reg")).toEqual([
      0, 0x40000000, 0, 0x8000000,
    ]);
    expect(propU32(root, "#size-cells")).toBe(2);
    expect(propU64(chosen, "linux,kho-fdt")).toBe(0x4321_0000n);
    expect(propLeU64(findNode(root, "/chosen/deeper") as FdtNode, "blob-size")).toBe(233n);
    expect(propString(root, "compatible")).toBe("kho-v4");
    expect(propStringList(chosen, "bootargs")).toEqual(["kho=on", "x"]);
    expect(propStringList(root, "empty")).toEqual([]);
    // Wrong shapes are DecodeErrors naming the value's offset.
    const at = root.propOffsets.get("compatible");
    expectDecodeError(() => propU64(root, "compatible"), /is 7 bytes, expected 8/, at);
    expectDecodeError(() => propU32(root, "compatible"), /expected one 4-byte cell/);
    expectDecodeError(() => propCells(root, "compatible"), /not whole cells/);
    expectDecodeError(() => propString(chosen, "bootargs"), /holds 2 strings/);
    expectDecodeError(() => propString(root, "#size-cells"), /not NUL-terminated/);
    expectDecodeError(() => propU32(root, "missing"), /has no property "missing"/);
  });

  const nameArb = fc.stringMatching(/^[a-z][a-z0-9,._+-]{0,12}(@[0-9a-f]{1,8})?$/);
  const propsArb = fc
    .uniqueArray(fc.tuple(nameArb, fc.uint8Array({ maxLength: 24 })), { selector: ([n]) => n, maxLength: 5 })
    .map((entries) => new Map(entries));
  const nodeArb = (depth: number): fc.Arbitrary<FdtNodeInput> =>
    fc.record({
      name: nameArb,
      props: propsArb,
      children:
        depth === 0
          ? fc.constant([])
          : fc.uniqueArray(nodeArb(depth - 1), { selector: (n) => n.name, maxLength: 3 }),
    });
  const treeArb = nodeArb(3);

  it("round-trips arbitrary trees (property)", () => {
    fc.assert(
      fc.property(treeArb, (t) => {
        const root = { ...t, name: "" };
        expectSameTree(parseFdt(writeFdt(root)).root, root);
      }),
      { numRuns: 150 },
    );
  });
});

describe("QEMU virt arm64 DTB fixture", () => {
  const fdt = parseFdt(qemuBlob);

  it("parses the header, the root and known nodes", () => {
    expect(fdt.header.version).toBe(17);
    expect(fdt.header.totalSize).toBe(qemuBlob.length);
    expect(propString(fdt.root, "model")).toBe("linux,dummy-virt");
    expect(propU32(fdt.root, "#address-cells")).toBe(2);
    const memory = findNode(fdt.root, "/memory@40000000") as FdtNode;
    expect(propCells(memory, "reg")).toEqual([0, 0x40000000, 0, 0x8000000]);
    expect(propStringList(findNode(fdt.root, "/psci") as FdtNode, "compatible")).toEqual([
      "arm,psci-1.0",
      "arm,psci-0.2",
      "arm,psci",
    ]);
    expect(findNode(fdt.root, "/chosen")).toBeDefined();
  });

  it("re-encodes to a blob with the same tree", () => {
    const again = parseFdt(writeFdt(fdt.root, { reservations: fdt.reservations }));
    expectSameTree(again.root, fdt.root);
  });

  describe("cross-check against dtc", () => {
    const dtc = hasDtc();
    const dir = mkdtempSync(join(tmpdir(), "fdt-test-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    if (!dtc) console.warn("skipping dtc cross-checks: dtc (device-tree-compiler) is not installed");

    it.skipIf(!dtc)("agrees with `dtc -I dtb -O dts` on every node and property", async () => {
      const dts = await execa("dtc", ["-q", "-I", "dtb", "-O", "dts", FIXTURE]);
      const parsed = parseDts(dts.stdout);
      expect(parsed.reservations).toEqual(fdt.reservations);
      expectSameTree(fdt.root, parsed.root);
    });

    it.skipIf(!dtc)("writes blobs dtc decompiles to the same source as the original", async () => {
      const path = join(dir, "rewritten.dtb");
      writeFileSync(path, writeFdt(fdt.root, { reservations: fdt.reservations }));
      const [a, b] = await Promise.all([
        execa("dtc", ["-q", "-I", "dtb", "-O", "dts", FIXTURE]),
        execa("dtc", ["-q", "-I", "dtb", "-O", "dts", path]),
      ]);
      expect(b.stdout).toBe(a.stdout);
    });
  });
});

describe("malformed FDTs", () => {
  const good = writeFdt(
    fdtNode("", { compatible: strings("kho-v4") }, [fdtNode("a", { x: cells(1) }, [fdtNode("b")])]),
  );
  const patch32 = (blob: Uint8Array, offset: number, value: number): Uint8Array => {
    const copy = blob.slice();
    new DataView(copy.buffer).setUint32(offset, value, false);
    return copy;
  };
  const structOff = new DataView(good.buffer).getUint32(8, false);
  /** Offset of the first token equal to `tag` in the structure block of `good`. */
  const tokenAt = (tag: number, nth = 0): number => {
    const view = new DataView(good.buffer);
    let seen = 0;
    for (let off = structOff; off < good.length; off += 4) {
      if (view.getUint32(off, false) === tag && seen++ === nth) return off;
    }
    throw new Error("token not found");
  };

  it("names the offset and the problem", () => {
    expectDecodeError(() => parseFdt(new Uint8Array(10)), /shorter than an FDT header/, 0);
    expectDecodeError(() => parseFdt(patch32(good, 0, 0xdeadbeef)), /bad magic 0xdeadbeef/, 0);
    expectDecodeError(
      () => parseFdt(good.subarray(0, good.length - 1)),
      /totalsize .* exceeds .*truncated/,
      4,
    );
    expectDecodeError(() => parseFdt(patch32(good, 20, 15)), /version 15 is older than 16/, 20);
    expectDecodeError(() => parseFdt(patch32(good, 24, 18)), /last_comp_version 18 needs a reader newer/, 24);
    expectDecodeError(() => parseFdt(patch32(good, 8, 12)), /points into the header/, 8);
    expectDecodeError(() => parseFdt(patch32(good, 8, 0x3a)), /not 4-byte aligned/, 8);
    expectDecodeError(() => parseFdt(patch32(good, 32, 0x10000)), /runs past totalsize/, 12);
    expectDecodeError(
      () => parseFdt(patch32(good, tokenAt(1, 1), 7)),
      /unknown structure token 0x7/,
      tokenAt(1, 1),
    );
    expectDecodeError(() => parseFdt(patch32(good, tokenAt(3) + 8, 0xffff)), /name offset 0xffff is outside/);
    expectDecodeError(
      () => parseFdt(patch32(good, tokenAt(3) + 4, 0x7fffffff)),
      /length 0x7fffffff runs past/,
    );
    expectDecodeError(() => parseFdt(patch32(good, tokenAt(9), 4)), /ends without FDT_END/);
    expectDecodeError(() => parseFdt(patch32(good, tokenAt(2, 2), 4)), /FDT_END inside open node \//);
    expectDecodeError(() => parseFdt(patch32(good, tokenAt(1), 2)), /FDT_END_NODE without an open node/);
    expectDecodeError(() => parseFdt(patch32(good, tokenAt(1), 3)), /property outside any node/);
  });

  it("enforces the depth limit", () => {
    let deep = fdtNode("n");
    for (let i = 0; i < 10; i++) deep = fdtNode("n", {}, [deep]);
    const blob = writeFdt(fdtNode("", {}, [deep]));
    expect(parseFdt(blob).root.children).toHaveLength(1);
    expectDecodeError(() => parseFdt(blob, { maxDepth: 5 }), /nested deeper than 5/);
  });

  it("rejects trees the spec forbids", () => {
    const dup = writeFdt(fdtNode("", {}, [fdtNode("a"), fdtNode("a")]));
    expectDecodeError(() => parseFdt(dup), /duplicate node \/a/);
    const slash = writeFdt(fdtNode("", {}, [fdtNode("a/b")]));
    expectDecodeError(() => parseFdt(slash), /contains "\/"/);
    const empty = writeFdt(fdtNode("", {}, [fdtNode("")]));
    expectDecodeError(() => parseFdt(empty), /empty node name/);
    // A property after a child node: move the child's tokens before the property by hand.
    const child = writeFdt(fdtNode("", {}, [fdtNode("c")]));
    const withProp = writeFdt(fdtNode("", { p: cells(1) }, [fdtNode("c")]));
    const v = new DataView(withProp.buffer);
    const s = v.getUint32(8, false);
    const reordered = withProp.slice();
    // root BEGIN(8) | PROP(16) | BEGIN c(8) END(4) -> root BEGIN | BEGIN c | END | PROP
    reordered.set(withProp.subarray(s + 24, s + 36), s + 8);
    reordered.set(withProp.subarray(s + 8, s + 24), s + 20);
    expect(parseFdt(child).root.children).toHaveLength(1);
    expectDecodeError(() => parseFdt(reordered), /property "p" after a child node/);
  });

  it("reads version 16 blobs, which have no size_dt_struct", () => {
    const v16 = patch32(patch32(good, 20, 16), 36, 0);
    expectSameTree(parseFdt(v16).root, parseFdt(good).root);
  });
});

describe("FDT fuzzing: only DecodeError, never a hang", () => {
  const packedQemu = writeFdt(parseFdt(qemuBlob).root);
  const written = writeFdt(
    fdtNode("", { compatible: strings("kho-v4"), "preserved-memory-map": leU64(0x1234000n) }, [
      fdtNode("kexec-metadata", { "preserved-data": leU64(0x5000n), "blob-size": leU64(73n) }),
    ]),
  );
  const interesting = [0, 1, 2, 3, 4, 9, 0x28, 0xff, 0x7fffffff, 0xffffffff, 0xfffffffc, 0xd00dfeed];

  /** Parse, return normally or with DecodeError; anything else fails the property. */
  const tryParse = (blob: Uint8Array): void => {
    const start = performance.now();
    try {
      parseFdt(blob);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
    }
    const ms = performance.now() - start;
    if (ms > 500) throw new Error(`parse took ${ms} ms`);
  };

  for (const [label, base] of [
    ["QEMU DTB (packed)", packedQemu],
    ["QEMU DTB (as dumped)", qemuBlob],
    ["written KHO FDT", written],
  ] as const) {
    const dataEnd = Math.min(base.length, 0x2000);
    // One scratch copy per blob, restored after each run: copying the 1 MiB dump per run is the slow part.
    const scratch = base.slice();
    const withEdits = (edits: [number, number][], fn: (blob: Uint8Array) => void): void => {
      try {
        for (const [at, value] of edits) scratch[at] = value;
        fn(scratch);
      } finally {
        for (const [at] of edits) scratch[at] = base[at] ?? 0;
      }
    };

    it(`mutated bytes: ${label}`, () => {
      const edit = fc.tuple(fc.nat({ max: dataEnd - 1 }), fc.integer({ min: 0, max: 255 }));
      fc.assert(
        fc.property(fc.array(edit, { minLength: 1, maxLength: 8 }), (edits) => withEdits(edits, tryParse)),
        { numRuns: 300 },
      );
    });

    it(`overwritten 32-bit words: ${label}`, () => {
      fc.assert(
        fc.property(
          fc.nat({ max: Math.floor(dataEnd / 4) - 1 }),
          fc.constantFrom(...interesting),
          (word, value) => {
            const bytes = [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
            withEdits(
              bytes.map((b, i): [number, number] => [word * 4 + i, b]),
              tryParse,
            );
          },
        ),
        { numRuns: 300 },
      );
    });

    it(`truncated, with and without a consistent totalsize: ${label}`, () => {
      fc.assert(
        fc.property(fc.nat({ max: dataEnd }), fc.boolean(), (length, fixTotal) => {
          const blob = base.slice(0, length);
          if (fixTotal && length >= 8) new DataView(blob.buffer).setUint32(4, length, false);
          tryParse(blob);
        }),
        { numRuns: 300 },
      );
    });
  }

  it("random bytes behind a valid magic", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 512 }), (bytes) => {
        const blob = new Uint8Array(bytes.length + 4);
        new DataView(blob.buffer).setUint32(0, 0xd00dfeed, false);
        blob.set(bytes, 4);
        tryParse(blob);
      }),
      { numRuns: 500 },
    );
  });
});

// ---- test-only helpers ----

function hasDtc(): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, "dtc"), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

interface DtsTree {
  root: FdtNodeInput;
  reservations: { address: bigint; size: bigint }[];
}

/**
 * A parser for the DTS that `dtc -O dts` prints from a blob: nodes, `name;` and `name = v, v;`
 * properties with "strings", <cells> and [bytes]. Enough to compare dtc's view with ours.
 */
function parseDts(text: string): DtsTree {
  let pos = 0;
  const ws = (): void => {
    while (pos < text.length && /\s/.test(text[pos] ?? "")) pos++;
  };
  const expectText = (s: string): void => {
    ws();
    if (!text.startsWith(s, pos))
      throw new Error(`dts: expected "${s}" at ${pos}: ${text.slice(pos, pos + 40)}`);
    pos += s.length;
  };
  const word = (): string => {
    ws();
    const m = /^[A-Za-z0-9,._+*#?@-]+/.exec(text.slice(pos));
    if (!m) throw new Error(`dts: expected a name at ${pos}: ${text.slice(pos, pos + 40)}`);
    pos += m[0].length;
    return m[0];
  };
  const peek = (): string => {
    ws();
    return text[pos] ?? "";
  };
  const stringValue = (): number[] => {
    expectText('"');
    const out: number[] = [];
    const simple: Record<string, number> = {
      a: 7,
      b: 8,
      t: 9,
      n: 10,
      v: 11,
      f: 12,
      r: 13,
      "\\": 92,
      '"': 34,
    };
    while (text[pos] !== '"') {
      const c = text[pos++] ?? "";
      if (c !== "\\") {
        out.push(...new TextEncoder().encode(c));
        continue;
      }
      const e = text[pos++] ?? "";
      if (e in simple) out.push(simple[e] ?? 0);
      else if (e === "x") {
        out.push(parseInt(text.slice(pos, pos + 2), 16));
        pos += 2;
      } else if (/[0-7]/.test(e)) {
        let digits = e;
        while (digits.length < 3 && /[0-7]/.test(text[pos] ?? "")) digits += text[pos++];
        out.push(parseInt(digits, 8));
      } else throw new Error(`dts: unknown escape \\${e}`);
    }
    pos++;
    out.push(0);
    return out;
  };
  const cellsValue = (): number[] => {
    expectText("<");
    const out: number[] = [];
    while (peek() !== ">") {
      const n = Number(word());
      out.push((n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
    }
    pos++;
    return out;
  };
  const bytesValue = (): number[] => {
    expectText("[");
    const out: number[] = [];
    while (peek() !== "]") {
      const hexText = word();
      for (let i = 0; i < hexText.length; i += 2) out.push(parseInt(hexText.slice(i, i + 2), 16));
    }
    pos++;
    return out;
  };
  const nodeBody = (name: string): FdtNodeInput => {
    expectText("{");
    const props = new Map<string, Uint8Array>();
    const children: FdtNodeInput[] = [];
    while (peek() !== "}") {
      const n = word();
      const next = peek();
      if (next === "{") children.push(nodeBody(n));
      else if (next === ";") {
        pos++;
        props.set(n, new Uint8Array());
      } else {
        expectText("=");
        const bytes: number[] = [];
        for (;;) {
          const c = peek();
          bytes.push(...(c === '"' ? stringValue() : c === "<" ? cellsValue() : bytesValue()));
          if (peek() === ",") pos++;
          else break;
        }
        expectText(";");
        props.set(n, new Uint8Array(bytes));
      }
    }
    expectText("}");
    expectText(";");
    return { name, props, children };
  };

  expectText("/dts-v1/;");
  const reservations: DtsTree["reservations"] = [];
  while (text.startsWith("/memreserve/", (ws(), pos))) {
    pos += "/memreserve/".length;
    const address = BigInt(word());
    const size = BigInt(word());
    expectText(";");
    reservations.push({ address, size });
  }
  expectText("/");
  const root = nodeBody("");
  return { root, reservations };
}
