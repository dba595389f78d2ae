import { kexecWithAgent } from "./kexec-step.js";
import type { Scenario } from "../api/scenario.js";

/** The kernel's own KHO self-test (lib/test_kho.c): preserves ~8 MiB of random-order folios in
 *  the first kernel and checks their checksum in the second. */
export const testKho: Scenario = {
  id: "test-kho",
  description:
    "the kernel's test_kho preserves random-order folios; the next kernel reports KHO restore succeeded",
  needs: ["kho", "test-kho"],
  boot: { kho: true },
  shareable: true,
  needsConsole: true,
  async run(ctx) {
    const since = ctx.guest.console.mark();
    await kexecWithAgent(ctx);
    const verdict = await ctx.phase("checks", () =>
      ctx.guest.console.waitFor(/test_kho: KHO restore (succeeded|failed)|test_kho: failed to retrieve/, {
        since,
        deadlineMs: 30_000,
        step: "test_kho restore",
      }),
    );
    ctx.check(verdict.match[1] === "succeeded", `the second kernel said: ${verdict.line.text}`, [
      verdict.line.text,
    ]);
    const exec = await ctx.guest.console.waitFor(/KHO: exec from: (.*) \(count (\d+)\)/, {
      since,
      deadlineMs: 1_000,
    });
    ctx.check(exec.match[2] === "1", `expected the first handover (count 1), got ${exec.line.text}`);
    ctx.check(ctx.guest.boot === 2, `expected to be in boot 2, reached boot ${ctx.guest.boot}`);
    // The new kernel's banner names what it is (the next kernel may be another series).
    const banner = await ctx.guest.console.waitFor(/Linux version (\S+)/, { since, deadlineMs: 1_000 });
    ctx.fact({
      kind: "boot",
      boot: ctx.guest.boot,
      release: banner.match[1] ?? "",
      execFrom: exec.match[1] ?? "",
      execCount: Number(exec.match[2]),
    });
  },
};
