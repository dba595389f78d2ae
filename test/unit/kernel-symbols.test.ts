// Naming a hung guest's program counters: the build's System.map, moved by the boot's KASLR
// offset (the init's `text=`).
import { describe, expect, it } from "vitest";
import { parseSystemMap, symbolize } from "../../src/kernel/symbols.js";
import { runtimeText } from "../../src/session/hang-evidence.js";

const MAP = [
  "0000000000000000 A __per_cpu_start",
  "ffff800080000000 T _text",
  "ffff800080010000 T _stext",
  "ffff800080010000 t __do_softirq",
  "ffff800080020000 T multi_cpu_stop",
  "ffff800080020400 W arch_cpu_idle",
  "ffff800080030000 D some_data",
  "ffff800080040000 T _etext",
].join("\n");

describe("kernel symbols", () => {
  const table = parseSystemMap(MAP);

  it("keeps text symbols only, sorted, with _text", () => {
    expect(table?.text).toBe(0xffff800080000000n);
    expect(table?.names).toEqual([
      "_text",
      "_stext",
      "__do_softirq",
      "multi_cpu_stop",
      "arch_cpu_idle",
      "_etext",
    ]);
  });

  it("names a program counter of a boot whose text KASLR moved", () => {
    if (!table) throw new Error("no table");
    const runtime = 0xffffade51b800000n; // _text in that boot
    const at = (linked: bigint) => runtime + (linked - table.text);
    expect(symbolize(table, runtime, at(0xffff800080020094n))).toBe("multi_cpu_stop+0x94");
    expect(symbolize(table, runtime, at(0xffff800080020400n))).toBe("arch_cpu_idle+0x0");
    expect(symbolize(table, runtime, at(0xffff800080010008n))).toBe("__do_softirq+0x8");
    // below the kernel's text, or far past it: not named
    expect(symbolize(table, runtime, runtime - 0x1000n)).toBeUndefined();
    expect(symbolize(table, runtime, at(0xffff800090000000n))).toBeUndefined();
  });

  it("no _text, no table", () => {
    expect(parseSystemMap("ffff800080020000 T multi_cpu_stop\n")).toBeUndefined();
  });

  it("the runtime text comes from the last ready line, and only if that one has it", () => {
    const ready = (id: string, text?: string) =>
      `[    1.4] KHO-GUEST: ready boot_id=${id} init_ms=start:1111,mounts:52${text ? ` text=${text}` : ""}`;
    expect(runtimeText(["x", ready("a", "ffffade51b800000"), "y"])).toBe(0xffffade51b800000n);
    expect(runtimeText([ready("a", "ffffade51b800000"), ready("b", "ffffffffbbc00000")])).toBe(
      0xffffffffbbc00000n,
    );
    expect(runtimeText([ready("a", "ffffade51b800000"), ready("b")])).toBeUndefined();
    expect(runtimeText(["no ready line"])).toBeUndefined();
    expect(runtimeText([ready("a", "?")])).toBeUndefined();
  });

  it("arm64's ready line gives _stext: _text follows from the link-time distance", () => {
    const table = parseSystemMap(
      "ffff800080000000 T _text\nffff800080010000 T _stext\nffff800080020000 T machine_kexec\n",
    );
    const line = "[    3.1] KHO-GUEST: ready boot_id=b init_ms=start:1 stext=ffff9a0000010000";
    expect(runtimeText([line], table)).toBe(0xffff9a0000000000n);
    // without the table's _stext there is no answer, not a wrong one
    expect(runtimeText([line])).toBeUndefined();
  });
});
