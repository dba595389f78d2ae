// The edges of a LUO session's life, each asserted by the errno the kernel's source decides:
// tokens nobody preserved, a session used after FINISH, and a session whose holder died
// before the kexec (kernel/liveupdate/luo_session.c, luo_file.c).
import {
  isAgentError,
  pfnAddresses,
  AgentTryRestoreResultSchema,
  type AgentMemfd,
  type AgentTryRestoreResult,
  AgentPreserveResultSchema,
  type AgentPreserveResult,
} from "../agent/protocol.js";
import type { ScenarioContext } from "../api/context.js";
import { dropPreKexecMemory, readMemoryBeforeKexec } from "../memory/handover.js";
import { checkDecodedHandover } from "./handover-step.js";
import { kexecWithAgent } from "./kexec-step.js";
import {
  checkPreserved,
  checkRestored,
  expectAgentError,
  holdSessions,
  preserveAndKexec,
  restoreSessions,
} from "./memfd-common.js";
import { MiB, seeded, sessionArgs } from "../agent/memfd-args.js";
import { findMemfd } from "../checks/memfd.js";
import type { Scenario } from "../api/scenario.js";

const NEEDS = ["kho", "luo", "luo-memfd"] as const;

/** What a try-restore reported for a token: a memfd, or only its retrieve error. */
function triedMemfd(r: AgentTryRestoreResult, session: string, token: number) {
  return r.sessions.find((x) => x.name === session)?.memfds.find((x) => x.token === String(token));
}

/** The agent's error for a token it could not retrieve under `try` (none: it got a file). */
function retrieveError(r: AgentTryRestoreResult, session: string, token: number) {
  const m = triedMemfd(r, session, token);
  return m && "retrieve_error" in m ? m.retrieve_error : undefined;
}

/** The result without the memfds the agent could not retrieve: what the restore checks compare. */
function retrievedOnly(r: AgentTryRestoreResult): AgentPreserveResult {
  return {
    ...r,
    sessions: r.sessions.map((s) => ({
      ...s,
      memfds: s.memfds.filter((m): m is AgentMemfd => !("retrieve_error" in m)),
    })),
  };
}

// luo_retrieve_file(): a token the session does not hold is -ENOENT; luo_session_retrieve(): so
// is a session name the previous kernel did not hand over. Tokens are per session.
const UNKNOWN = 0xdeadbeef;
const unknownToken: Scenario = {
  id: "memfd-unknown-token",
  description:
    "after kexec, an unknown session name and tokens no session holds (or only another session holds) are refused with ENOENT; the real tokens still come back intact",
  needs: NEEDS,
  boot: { kho: true },
  shareable: true,
  async run(ctx) {
    const sessions = seeded([
      { name: "kho-tokens-a", memfds: [{ token: 7, size: MiB }] },
      { name: "kho-tokens-b", memfds: [{ token: 9, size: MiB }] },
    ]);
    const { before } = await preserveAndKexec(ctx, sessions);
    const noSession = await ctx.agentOutcome(
      "restore --session kho-no-such-session",
      AgentPreserveResultSchema,
      { artifact: "agent-unknown-session.json" },
    );
    expectAgentError(
      ctx,
      noSession,
      "retrieve_session",
      "ENOENT",
      "RETRIEVE_SESSION of a name never preserved",
    );
    const [a, b] = sessions;
    if (!a || !b) return;
    // session a: an unknown token, then b's token 9, then its own 7; session b as usual
    const tried = [
      {
        name: a.name,
        memfds: [{ token: UNKNOWN, size: 0, try: true }, { token: 9, size: 0, try: true }, ...a.memfds],
      },
      b,
    ];
    const after = await ctx.phase("restore", () =>
      ctx.agent(`restore ${sessionArgs(tried, "restore")} --finish`, AgentTryRestoreResultSchema, {
        artifact: "agent-restore.json",
      }),
    );
    await ctx.phase("checks", () => {
      for (const token of [UNKNOWN, 9]) {
        const err = retrieveError(after, a.name, token);
        if (err) ctx.fact({ kind: "errno", operation: `RETRIEVE_FD ${token}`, errname: err.errname });
        ctx.check(
          err?.errno === 2 && err.errname === "ENOENT",
          `RETRIEVE_FD of token ${token} from ${a.name}, which does not hold it, gave ${err ? `${err.errname} (${err.errno})` : "a file"}, expected ENOENT (2)`,
          [JSON.stringify(triedMemfd(after, a.name, token) ?? null)],
        );
      }
      checkRestored(ctx, sessions, before, retrievedOnly(after));
      return Promise.resolve();
    });
    ctx.note(
      `unknown session: ENOENT; token 0x${UNKNOWN.toString(16)} and another session's token 9: ENOENT (errno 2); tokens 7 and 9 intact in their own sessions`,
    );
  },
};

// After FINISH (luo_file_finish) the session holds no files: RETRIEVE_FD is -ENOENT, even for a
// token never retrieved (its folios were discarded), a second FINISH has nothing to do (0).
// The fd stays an incoming session: PRESERVE_FD is -EINVAL (luo_ioctl_type_valid), and
// RETRIEVE_SESSION of its name is -EINVAL while it is open (session->retrieved). Closing the fd
// removes it: RETRIEVE_SESSION is then -ENOENT and the name is free for a new session. The
// retrieved memfd is the process's own: it can be resized and written like any memfd.
const FINISHED = "kho-finish-then-use";
const AFTER_FINISH = {
  retrieve_fd: [
    { token: "1", result: "ENOENT" },
    { token: "2", result: "ENOENT" },
  ],
  finish_again: "ok",
  preserve_fd: "EINVAL",
  retrieve_session: "EINVAL",
};
const finishThenUse: Scenario = {
  id: "memfd-finish-then-use",
  description:
    "a session used after FINISH: its tokens are gone (ENOENT, also one never retrieved), FINISH again is a no-op, PRESERVE_FD and RETRIEVE_SESSION give EINVAL, after close the name is gone (ENOENT); the retrieved memfd stays usable",
  needs: NEEDS,
  boot: { kho: true },
  shareable: true,
  async run(ctx) {
    const sessions = seeded([
      {
        name: FINISHED,
        memfds: [
          { token: 1, size: MiB },
          { token: 2, size: 256 * 1024 },
        ],
      },
    ]);
    const { before } = await preserveAndKexec(ctx, sessions);
    const [session] = sessions;
    const first = session?.memfds[0];
    if (!session || !first) return;
    const retrieved = [{ name: FINISHED, memfds: [first] }];
    const after = await restoreSessions(ctx, retrieved, "--probe-token 2 --after-finish");
    const gone = await ctx.agentOutcome(`restore --session ${FINISHED}`, AgentPreserveResultSchema, {
      artifact: "agent-after-close.json",
    });
    const again = await ctx.agentOutcome(`preserve --session ${FINISHED}`, AgentPreserveResultSchema, {
      artifact: "agent-recreate.json",
    });
    await ctx.phase("checks", () => {
      checkRestored(ctx, retrieved, before, after);
      const probe = after.sessions[0]?.after_finish;
      const { memfds, ...calls } = probe ?? { memfds: [] };
      // what the finished session answered, as facts: every refusal with its errno
      for (const [operation, errname] of [
        ["PRESERVE_FD after FINISH", probe?.preserve_fd],
        ["RETRIEVE_SESSION after FINISH", probe?.retrieve_session],
        ...(probe?.retrieve_fd ?? []).map((r) => [`RETRIEVE_FD ${r.token} after FINISH`, r.result]),
      ] as const) {
        if (errname && errname !== "ok") ctx.fact({ kind: "errno", operation, errname });
      }
      ctx.check(
        JSON.stringify(calls) === JSON.stringify(AFTER_FINISH),
        "the finished session answered otherwise than luo_session.c/luo_file.c decide",
        [`got      ${JSON.stringify(calls)}`, `expected ${JSON.stringify(AFTER_FINISH)}`],
      );
      const use = memfds[0];
      ctx.check(
        use !== undefined && Object.values(use.freeze_probe).every((r) => r === "ok"),
        "the retrieved memfd cannot be resized or written after FINISH",
        [JSON.stringify(use?.freeze_probe ?? null)],
      );
      ctx.check(
        use?.sha256 === findMemfd(after, FINISHED, 1)?.sha256,
        "using the memfd after FINISH changed its contents",
      );
      expectAgentError(
        ctx,
        gone,
        "retrieve_session",
        "ENOENT",
        "RETRIEVE_SESSION after the finished session was closed",
      );
      ctx.check(!isAgentError(again), "the name of the closed session cannot be used for a new one", [
        JSON.stringify(again).slice(0, 400),
      ]);
      return Promise.resolve();
    });
    ctx.note(
      "after FINISH: RETRIEVE_FD ENOENT (tokens 1, 2), FINISH ok, PRESERVE_FD EINVAL, RETRIEVE_SESSION EINVAL; after close: ENOENT and the name is free; the memfd stays usable",
    );
  },
};

// A holder that dies closes its session fd: luo_session_release() unpreserves every file
// (memfd_luo_unpreserve unpins the folios and drops LUO's reference), so the kexec carries no
// session and none of the memfd's frames.
const DIED = "kho-holder-died";
const SIZE = 4 * MiB;
const meminfoKiB = async (ctx: ScenarioContext, field: string) =>
  Number(/\d+/.exec(await ctx.guest.run(`grep '^${field}:' /proc/meminfo`))?.[0] ?? NaN);

const holderDied: Scenario = {
  id: "memfd-holder-died",
  description:
    "the process holding a session with a 4 MiB memfd is SIGKILLed before kexec: its memory is freed at once, and the next kernel has no such session (ENOENT) and none of its frames in the decoded KHO map",
  needs: [...NEEDS, "kho-debugfs"],
  boot: { kho: true },
  needsQemu: "its frames are looked for in the KHO map the host decodes from the old kernel's memory",
  async run(ctx) {
    const sessions = seeded([{ name: DIED, memfds: [{ token: 1, size: SIZE }] }]);
    const held = await ctx.phase("preserve", () =>
      holdSessions(ctx, `preserve ${sessionArgs(sessions)}`, "agent-preserve.json"),
    );
    await checkPreserved(ctx, sessions, held.result);
    const pre = findMemfd(held.result, DIED, 1);
    const shmemHeld = await meminfoKiB(ctx, "Shmem");
    await ctx.phase("kill", async () => {
      await ctx.guest.run(`kill -9 ${held.result.pid}`);
      await held.stream.done;
      // the session fd is released when the process is reaped
      await ctx.guest.run(
        `i=0; while kill -0 ${held.result.pid} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done`,
      );
    });
    const shmemFreed = shmemHeld - (await meminfoKiB(ctx, "Shmem"));
    const recreate = await ctx.agentOutcome(`preserve --session ${DIED}`, AgentPreserveResultSchema, {
      artifact: "agent-recreate.json",
    });
    const { memory: dump, note: kept } = await ctx.phase("dump", () => readMemoryBeforeKexec(ctx));
    ctx.note(kept);
    await kexecWithAgent(ctx);
    const retrieve = await ctx.agentOutcome(`restore --session ${DIED}`, AgentPreserveResultSchema, {
      artifact: "agent-restore.json",
    });
    await ctx.phase("checks", async () => {
      ctx.check(
        // other shmem users (tmpfs) move the counter by a few pages; a file LUO still holds frees nothing
        shmemFreed >= (SIZE / 1024) * 0.9,
        `killing the holder freed ${shmemFreed} KiB of shmem, not the ${SIZE / 1024} KiB memfd: LUO still holds the file`,
      );
      ctx.check(!isAgentError(recreate), "the dead holder's session name is still taken in boot 1", [
        JSON.stringify(recreate).slice(0, 400),
      ]);
      expectAgentError(
        ctx,
        retrieve,
        "retrieve_session",
        "ENOENT",
        "RETRIEVE_SESSION of the dead holder's session",
      );
      const frames = pfnAddresses(pre?.pfns ?? [], pre?.page_size ?? 4096).map((start) => ({
        owner: `memfd ${DIED}/1 (holder killed)`,
        start,
        end: start + BigInt(pre?.page_size ?? 4096),
      }));
      const report = await checkDecodedHandover(ctx, dump, frames, { claimsPreserved: false });
      const kept = frames.length - report.missing.length;
      ctx.check(
        kept === 0,
        `${kept} of the dead holder's ${frames.length} frames are still in the decoded KHO map`,
        [
          ...report.table
            .filter((r) => r.owner.includes("holder killed"))
            .slice(0, 8)
            .map((r) => `0x${r.start.toString(16)} order ${r.order}`),
        ],
      );
      ctx.note(
        `holder killed: ${shmemFreed} KiB shmem freed, name free again; next kernel: RETRIEVE_SESSION ENOENT, 0 of ${frames.length} frames preserved (${report.chunks.length} chunks in the map)`,
      );
      await dropPreKexecMemory(dump);
    });
  },
};

export const MEMFD_LIFECYCLE: readonly Scenario[] = [unknownToken, finishThenUse, holderDied];
