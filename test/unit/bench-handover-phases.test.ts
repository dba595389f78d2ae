// The cutting of a handover's console into phases (src/bench/handover-phases.ts): on consoles
// recorded from real kexecs (x86_64 and arm64, 7.2, 64 MiB memfd; `kho bench handover` writes
// them as handover-console.jsonl), and on synthetic ones whose answer is known by construction.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { cutHandover, printkMs, reservedKiB } from "../../src/bench/handover-phases.js";
import type { ConsoleLine } from "../../src/vm/console.js";

const recorded = (name: string): ConsoleLine[] =>
  readFileSync(new URL(`../fixtures/handover-console/${name}`, import.meta.url), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as ConsoleLine);

/** Lines at host times `at` (ms), with the printk time given (seconds) or none. */
function consoleOf(lines: readonly [number, number | undefined, string][]): ConsoleLine[] {
  return lines.map(([at, printk, text], seq) => ({
    seq,
    boot: 1,
    at,
    text: printk === undefined ? text : `[${printk.toFixed(6).padStart(12)}] ${text}`,
  }));
}

describe("cutHandover on recorded consoles", () => {
  // Each value checked by hand against the fixture's lines (host ms since its first line):
  // x86_64: reboot mark printk 3.253703, "Starting new kernel" 3.262116 (at 5.6), banner at
  // 762.2, zonelists at 953.2, SLUB at 992.6 (early printk times 0), "Run /init" printk 1.290150,
  // ready printk 1.636763, with the new clock's zero at about 1190.5 ms on the host's.
  it("x86_64: purgatory (SHA-256 of the segments under TCG) is most of the gap before the banner", () => {
    const cut = cutHandover(recorded("x86_64-memfd-64M.jsonl"));
    expect(cut.missing).toEqual([]);
    expect(cut.phasesMs.shutdown).toBeCloseTo(8.4, 1);
    expect(cut.phasesMs.purgatory).toBeCloseTo(756.6, 1);
    expect(cut.phasesMs["early-boot"]).toBeCloseTo(191.0, 1);
    expect(cut.phasesMs["mm-init"]).toBeCloseTo(39.4, 1);
    expect(cut.phasesMs["kernel-init"]).toBeCloseTo(1377.2, 0);
    expect(cut.phasesMs.userspace).toBeCloseTo(346.6, 0);
    expect(cut.phasesMs["deferred-pages"]).toBe(16);
    expect(cut.reservedKiBAfter).toBe(112996);
  });

  // arm64: the old kernel goes on printing after "Starting new kernel" ("psci: CPU1 killed",
  // "Bye!", old clock): they must not set the new clock's zero; before sched_clock (printk 0)
  // lines are placed at their arrival, after it at zero + printk (sched_clock at 400.3 ms).
  it("arm64: the old kernel's last lines do not shift the new kernel's clock", () => {
    const cut = cutHandover(recorded("arm64-memfd-64M.jsonl"));
    expect(cut.missing).toEqual([]);
    expect(cut.phasesMs.shutdown).toBeCloseTo(6.7, 1);
    expect(cut.phasesMs.purgatory).toBeCloseTo(135.6, 1);
    expect(cut.phasesMs["early-boot"]).toBeCloseTo(128.4, 1);
    expect(cut.phasesMs["mm-init"]).toBeCloseTo(39.3, 1);
    expect(cut.phasesMs["kernel-init"]).toBeGreaterThan(2040);
    expect(cut.phasesMs["kernel-init"]).toBeLessThan(2060);
    expect(cut.phasesMs.userspace).toBeCloseTo(312.3, 0);
    expect(cut.phasesMs["deferred-pages"]).toBe(56);
    expect(cut.reservedKiBAfter).toBe(107788);
  });
});

describe("cutHandover on synthetic consoles", () => {
  // The new clock's zero is at host 1000 ms; lines printed with a clock arrive 5 ms late, except
  // one that arrives 1 ms late (it sets the zero at 1001).
  const kexec = consoleOf([
    [0, 10.0, "kho-agent: reboot(KEXEC)"],
    [60, 10.05, "kexec_core: Starting new kernel"],
    [70, 10.06, "Bye!"],
    [900, 0, "Linux version 7.2.13 (root@vm)"],
    [950, 0, "Built 2 zonelists, mobility grouping on."],
    [990, 0, "SLUB: HWalign=64, Order=0-3"],
    [1006, 0.001, "sched_clock: 57 bits"],
    [1101, 0.1, "luo: Retrieved live update data, liveupdate number: 1"],
    [1305, 0.3, "node 0 deferred pages initialised in 12ms"],
    [1306, 0.3, "node 1 deferred pages initialised in 30ms"],
    [1310, 0.305, "Memory: 900K/1000K available (1K kernel code, 5000K reserved, 0K cma-reserved)"],
    [2005, 1.0, "Run /init as init process"],
    [2505, 1.5, "KHO-GUEST: ready boot_id=x"],
  ]);

  it("cuts at every landmark on one clock", () => {
    const cut = cutHandover(kexec);
    expect(cut).toEqual({
      phasesMs: {
        shutdown: 50,
        purgatory: 840,
        "early-boot": 50,
        "mm-init": 40,
        // zero at 1001: "Run /init" at 2001
        "kernel-init": 1011,
        userspace: 500,
        "deferred-pages": 42,
      },
      missing: [],
      reservedKiBAfter: 5000,
    });
  });

  it("names a missing landmark and times the next phase from the last one found", () => {
    const cut = cutHandover(kexec.filter((l) => !/SLUB/.test(l.text)));
    expect(cut.missing).toEqual(["mm-init"]);
    expect(cut.phasesMs["mm-init"]).toBeUndefined();
    expect(cut.phasesMs["kernel-init"]).toBe(1051);
  });

  it("without the reboot mark there is no shutdown; without a kexec, nothing after it", () => {
    expect(cutHandover(kexec.slice(1)).missing).toEqual(["shutdown"]);
    const none = cutHandover(kexec.slice(0, 1));
    expect(none.phasesMs).toEqual({});
    expect(none.missing).toEqual([
      "shutdown",
      "purgatory",
      "early-boot",
      "mm-init",
      "kernel-init",
      "userspace",
    ]);
  });

  it("reads printk times and reserved memory", () => {
    expect(printkMs("[    3.120111] x")).toBeCloseTo(3120.111, 6);
    expect(printkMs("/ # [   12.000001] x")).toBeCloseTo(12000.001, 6);
    expect(printkMs("no time")).toBeUndefined();
    expect(
      reservedKiB("Memory: 994096K/1048044K available (8427K kernel code, 51316K reserved, 0K cma-reserved)"),
    ).toBe(51316);
    expect(reservedKiB("Memory: nothing")).toBeUndefined();
  });
});
