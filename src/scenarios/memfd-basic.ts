import { randomInt } from "node:crypto";
import {
  isAgentError,
  pfnAddresses,
  type AgentMemfd,
  type AgentPreserveResult,
} from "../guest/agent-protocol.js";
import { memfdPatternSha256 } from "../guest/agent-build.js";
import { agentFailure, parseAgentLine } from "../run/context.js";
import { checkHandover, dropDump, dumpBeforeKexec } from "../run/handover.js";
import type { Scenario } from "./types.js";

const SESSION = "kho-memfd-basic";
const SIZE = 4 * 1024 * 1024;

function runsText(m: AgentMemfd): string {
  return JSON.stringify(m.pfns);
}

/** A LUO session holding one memfd of 4 MiB of pseudo-random bytes (a fresh seed every run),
 *  carried across kexec: same bytes, same frames, session finished; and the host finds every
 *  frame in the preserved-memory map it decodes itself. */
export const memfdBasic: Scenario = {
  id: "memfd-basic",
  description:
    "a LUO session with a 4 MiB memfd survives kexec: same SHA-256, same frames, in the decoded KHO map",
  needs: ["kho", "kho-debugfs", "luo", "luo-memfd"],
  boot: { kho: true },
  async run(ctx) {
    const seed = randomInt(1, 2 ** 47);
    const spec = `--session ${SESSION} --memfd 1:${SIZE}:seed=${seed}`;
    const expectedSha = memfdPatternSha256(BigInt(seed), SIZE);

    const stream = await ctx.guest.stream(
      `kho-agent preserve ${spec} --kexec-kernel /boot/next-kernel --kexec-initrd /boot/next-initrd --reuse-cmdline --wait`,
    );
    const before = await ctx.phase("preserve", async () => {
      const r = parseAgentLine<AgentPreserveResult>(
        await stream.readLine(120_000),
        "kho-agent preserve",
        stream.stderr(),
      );
      await ctx.artifact("agent-preserve.json", JSON.stringify(r, null, 2) + "\n");
      if (isAgentError(r)) throw agentFailure(r);
      return r;
    });
    const pre = before.sessions[0]?.memfds[0];
    ctx.check(pre !== undefined, "the agent reported no preserved memfd");
    if (!pre) return;
    ctx.check(
      pre.sha256 === expectedSha,
      `the guest filled the memfd with other bytes than the host computed`,
      [`guest ${pre.sha256}`, `host  ${expectedSha}`],
    );
    ctx.check(
      pre.pfns !== null && pre.pages_present === SIZE / pre.page_size,
      "the agent could not read every frame",
      [runsText(pre)],
    );

    const dump = await ctx.phase("dump", () => dumpBeforeKexec(ctx));
    const { blackoutMs } = await ctx.phase("kexec", () =>
      ctx.guest.kexec(async () => {
        stream.writeLine("kexec");
        await stream.done;
      }),
    );
    ctx.note(`kexec blackout ${Math.round(blackoutMs)} ms`);

    const after = await ctx.phase("restore", () =>
      ctx.agent<AgentPreserveResult>(
        `restore --session ${SESSION} --memfd 1:${SIZE}:seed=${seed} --finish`,
        "agent-restore.json",
      ),
    );
    const post = after.sessions[0]?.memfds[0];
    ctx.check(post !== undefined, "the restored session has no memfd");
    if (!post) return;
    await ctx.phase("checks", async () => {
      ctx.check(post.size === SIZE, `restored size ${post.size}, preserved ${SIZE}`);
      ctx.check(post.sha256 === expectedSha, "the memfd's contents changed across kexec", [
        `before ${pre.sha256}`,
        `after  ${post.sha256}`,
      ]);
      ctx.check(after.sessions[0]?.finished === true, "the session could not be finished after retrieval");
      ctx.check(
        runsText(post) === runsText(pre),
        "the memfd came back on other physical frames (in-place preservation broken)",
        [`before ${runsText(pre)}`, `after  ${runsText(post)}`],
      );
      ctx.note(
        `4 MiB, sha256 ${post.sha256.slice(0, 16)}..., ${pre.pages_present} frames identical before and after`,
      );

      const inFdt = await ctx.guest.readFile("/sys/kernel/debug/kho/in/fdt");
      const frames = pfnAddresses(pre.pfns ?? [], pre.page_size).map((start) => ({
        owner: `memfd ${SESSION}/1`,
        start,
        end: start + BigInt(pre.page_size),
      }));
      const report = await checkHandover(ctx, inFdt, dump, frames);
      ctx.check(
        report.missing.length === 0,
        `${report.missing.length} preserved frames are missing from the decoded KHO map`,
        [...report.missing.slice(0, 10).map((a) => `0x${a.toString(16)}`)],
      );
      ctx.note(
        `decoded KHO map: ${report.chunks.length} chunks, all ${frames.length} memfd frames found (${report.decodeMs.toFixed(0)} ms)`,
      );
    });
    await dropDump(dump);
  },
};
