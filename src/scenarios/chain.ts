// A chain of kexecs: a memfd preserved in boot 1 is retrieved and preserved again at every hop
// (the agent's --carry), and every hop must find the same bytes on the same frames, with the
// kernel's own exec count ("KHO: exec from: <release> (count N)") rising by one per hop.
import { randomInt } from "node:crypto";
import { AgentPreserveResultSchema, type AgentMemfd, type AgentPreserveResult } from "../agent/protocol.js";
import { memfdPatternSha256 } from "../agent/model.js";
import { CheckFailed } from "../api/outcome.js";
import { formatTimeline } from "../session/boot-timeline.js";
import { holdSessions, kexecHeld } from "./memfd-common.js";
import type { Scenario } from "../api/scenario.js";

export const DEFAULT_CHAIN_HOPS = 3;
const SESSION = "kho-chain";
const SIZE = 2 * 1024 * 1024;
const EXEC_COUNT = /KHO: exec from: (\S+) \(count (\d+)\)/;

function firstMemfd(r: AgentPreserveResult, where: string): AgentMemfd {
  const m = r.sessions[0]?.memfds[0];
  if (!m) throw new CheckFailed(`kho-agent ${where} reported no memfd`, [JSON.stringify(r).slice(0, 400)]);
  return m;
}

/** `hops` (kho run --chain N): kexecs in a row. */
export const chainMemfd: Scenario = {
  id: "chain-memfd",
  description: `a 2 MiB memfd carried through N kexecs in a row (default ${DEFAULT_CHAIN_HOPS}, re-preserved at every hop): same bytes, same frames, exec count +1 per hop`,
  params: { hops: DEFAULT_CHAIN_HOPS },
  // a kexec takes 3-6 s under TCG here: room for --chain 100
  deadlineMs: 30 * 60_000,
  needs: ["kho", "luo", "luo-memfd"],
  boot: { kho: true },
  // Its first kexec is the shared guest's; the later hops follow once the others are done
  // (the rendezvous fires when every member still running has arrived).
  shareable: true,
  async run(ctx) {
    const hops = Number(ctx.params.hops);
    const seed = randomInt(1, 2 ** 47);
    const spec = `--session ${SESSION} --memfd 1:${SIZE}:seed=${seed}`;
    const expectedSha = memfdPatternSha256(BigInt(seed), SIZE);
    // A guest starts cold (no line: 0); a machine target may have kexeced before this scenario.
    const startCount = Number(EXEC_COUNT.exec(await ctx.guest.run("dmesg"))?.[2] ?? 0);
    let held = await ctx.phase("preserve", () => holdSessions(ctx, `preserve ${spec}`, "agent-hop0.json"));
    const first = firstMemfd(held.result, "preserve");
    ctx.check(
      first.sha256 === expectedSha,
      "the guest filled the memfd with other bytes than the host computed",
    );
    const frames = JSON.stringify(first.pfns);

    for (let hop = 1; hop <= hops; hop++) {
      const blackout = await kexecHeld(ctx, held.stream, `kexec ${hop}`);
      const dmesg = await ctx.guest.run("dmesg");
      await ctx.artifact(`dmesg-hop${hop}.txt`, dmesg);
      const count = EXEC_COUNT.exec(dmesg);
      ctx.check(
        Number(count?.[2]) === startCount + hop,
        `hop ${hop}: the kernel reports exec count ${count?.[2] ?? "none"}, not ${startCount + hop}`,
        [count?.[0] ?? "no 'KHO: exec from' line in dmesg"],
      );
      const last = hop === hops;
      const args = `restore ${spec} ${last ? "--finish" : "--carry"}`;
      const r = last
        ? await ctx.phase("restore", () =>
            ctx.agent(args, AgentPreserveResultSchema, { artifact: `agent-hop${hop}.json` }),
          )
        : (held = await ctx.phase("restore", () => holdSessions(ctx, args, `agent-hop${hop}.json`))).result;
      const m = firstMemfd(r, "restore");
      ctx.check(m.sha256 === expectedSha, `hop ${hop}: the memfd's contents changed`, [
        `expected ${expectedSha}`,
        `found    ${m.sha256}`,
      ]);
      ctx.check(JSON.stringify(m.pfns) === frames, `hop ${hop}: the memfd came back on other frames`, [
        `boot 1 ${frames}`,
        `hop ${hop} ${JSON.stringify(m.pfns)}`,
      ]);
      ctx.note(`hop ${hop}: count ${startCount + hop}, blackout ${formatTimeline(blackout.segments)}`);
    }
    ctx.note(`${hops} hops, 2 MiB identical on the same frames throughout`);
  },
};
