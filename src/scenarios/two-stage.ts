// `kho exec`: a user's own test spanning kexecs. Each stage is a shell command run in one boot;
// a kexec with KHO separates consecutive stages. A stage that exits non-zero fails the test,
// exit 4 (kselftest's skip) skips it; every stage's output goes to the artifacts.
import { basename } from "node:path";
import { kexecWithAgent } from "./kexec-step.js";
import type { Scenario } from "../api/scenario.js";

export function twoStageScenario(stages: readonly string[], uploads: readonly string[]): Scenario {
  return {
    id: "exec",
    description: `${stages.length} stages across ${stages.length - 1} kexec(s): ${stages.join(" | ")}`,
    needs: ["kho"],
    boot: { kho: true },
    async run(ctx) {
      for (const file of uploads) await ctx.guest.upload(file, `${ctx.guest.workDir}/${basename(file)}`);
      for (const [i, command] of stages.entries()) {
        if (i > 0) await kexecWithAgent(ctx, `kexec ${i}`);
        const r = await ctx.phase(`stage${i + 1}`, () =>
          ctx.guest.exec(`cd ${ctx.guest.workDir} && (${command}) 2>&1`, 600_000),
        );
        await ctx.artifact(`stage${i + 1}.txt`, r.stdout);
        const tail = r.stdout.trimEnd().split("\n").slice(-20);
        if (r.code === 4) ctx.skip(`stage ${i + 1} skipped (exit 4): ${tail.at(-1) ?? ""}`);
        ctx.check(
          r.code === 0,
          `stage ${i + 1} exited ${r.code ?? r.signal} in boot ${ctx.guest.boot}: ${command}`,
          tail,
        );
        ctx.note(`stage ${i + 1} passed in boot ${ctx.guest.boot}`);
      }
    },
  };
}
