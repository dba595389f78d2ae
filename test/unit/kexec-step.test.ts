// The kexec trigger: an exec whose reply is lost with the old kernel is not a failure when the
// agent's reboot mark is on the console; an exec refused before any reboot is.
import { describe, expect, it } from "vitest";
import type { ScenarioContext } from "../../src/api/context.js";
import type { BootTiming } from "../../src/session/boot-timeline.js";
import { kexecWithAgent } from "../../src/scenarios/kexec-step.js";

function fakeCtx(consoleText: string[]): { ctx: ScenarioContext; notes: string[] } {
  const notes: string[] = [];
  const timing = { via: "kexec", totalMs: 1000, segments: [] } as unknown as BootTiming;
  const guest = {
    kexecLoadsNextKernel: true,
    console: {
      mark: () => 0,
      entriesSince: () => consoleText.map((text, i) => ({ seq: i + 1, at: i, text })),
    },
    // as ssh2 reports an exec whose reply never came: after the link timed out
    stream: () => new Promise((_, reject) => setTimeout(() => reject(new Error("Unable to exec")), 20)),
    // the new kernel is up after 100 ms unless `failed` rejects first
    kexec: async (trigger: () => Promise<void>, _step: string, failed: Promise<never>) => {
      await trigger();
      return Promise.race([new Promise<BootTiming>((r) => setTimeout(() => r(timing), 100)), failed]);
    },
  };
  const ctx = {
    guest,
    phase: <T>(_name: string, fn: () => Promise<T>) => fn(),
    note: (line: string) => notes.push(line),
  } as unknown as ScenarioContext;
  return { ctx, notes };
}

describe("kexecWithAgent", () => {
  it("takes a lost exec reply for a trigger when the agent printed its reboot mark", async () => {
    const { ctx, notes } = fakeCtx(["[    4.5] kho-agent: reboot(KEXEC)"]);
    await expect(kexecWithAgent(ctx)).resolves.toMatchObject({ totalMs: 1000 });
    expect(notes[0]).toMatch(/^kexec blackout/);
  });

  it("fails with the exec's error when the command never ran (no reboot mark)", async () => {
    const { ctx } = fakeCtx(["[    4.5] something else"]);
    await expect(kexecWithAgent(ctx)).rejects.toThrow("Unable to exec");
  });
});
