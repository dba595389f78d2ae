// The boot timeline cuts a boot's wall time at console landmarks; lines come from a real x86_64
// kexec (boot 2 of test-kho), with host times made up to check the arithmetic.
import { describe, expect, it } from "vitest";
import { bootTimeline, formatTimeline } from "../../src/session/boot-timeline.js";
import type { ConsoleLine } from "../../src/vm/console.js";

function lines(entries: readonly [number, string][]): ConsoleLine[] {
  return entries.map(([at, text], seq) => ({ seq, boot: 1, text, at }));
}

const KEXEC_LINES = lines([
  [1_050, "[   12.001000] kho_harness: preserved 2 blocks"],
  [1_300, "[   12.250000] kexec_core: Starting new kernel"],
  [2_500, "[    0.000000] Linux version 7.2.13 (root@kho) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP"],
  [6_000, "[    2.189939] test_kho: KHO restore succeeded"],
  [7_000, "[    4.164737] Run /init as init process"],
  [9_100, "KHO-GUEST: ready boot_id=613d04b9-3219-4bdc-8898-6f83688b7a51"],
]);

describe("bootTimeline", () => {
  it("cuts a kexec at shutdown, handover, kernel, init and ssh", () => {
    const t = bootTimeline(KEXEC_LINES, 1_000, 9_800, "kexec");
    expect(t).toEqual([
      { name: "shutdown", ms: 300 },
      { name: "handover", ms: 1_200 },
      { name: "kernel", ms: 4_500 },
      { name: "init", ms: 2_100 },
      { name: "ssh", ms: 700 },
    ]);
    expect(t.reduce((s, x) => s + x.ms, 0)).toBe(8_800);
    expect(formatTimeline(t)).toBe("8.8 s (shutdown 0.3, handover 1.2, kernel 4.5, init 2.1, ssh 0.7)");
  });

  it("cuts a first boot at firmware, kernel, init and ssh", () => {
    const boot = lines([
      [900, "SeaBIOS (version 1.16.3-debian-1.16.3-2)"],
      [1_400, "[    0.000000] Linux version 7.2.13 (root@kho) #1 SMP"],
      [5_000, "[    4.358035] Run /init as init process"],
      [7_000, "KHO-GUEST: ready boot_id=cc42c9fa"],
    ]);
    expect(bootTimeline(boot, 0, 7_500, "boot").map((s) => s.name)).toEqual([
      "firmware",
      "kernel",
      "init",
      "ssh",
    ]);
  });

  it("folds a missing landmark into the next segment and never goes back in time", () => {
    // No "Starting new kernel" (a console that lost it): shutdown and handover are one segment.
    const t = bootTimeline(
      KEXEC_LINES.filter((l) => !l.text.includes("Starting new kernel")),
      1_000,
      9_800,
      "kexec",
    );
    expect(t.map((s) => s.name)).toEqual(["handover", "kernel", "init", "ssh"]);
    expect(t[0]).toEqual({ name: "handover", ms: 1_500 });
    // Lines printed before the trigger never count.
    expect(bootTimeline(KEXEC_LINES, 8_000, 9_800, "kexec")).toEqual([
      { name: "init", ms: 1_100 },
      { name: "ssh", ms: 700 },
    ]);
  });
});
