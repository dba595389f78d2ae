// Races that operation sequences cannot reach (guest/agent/ops.c race_*): RETRIEVE_FD in one
// process against FINISH in another, LUO mutated from two threads while a third reboots into
// the next kernel, and ioctls on a device or session fd that another thread closes. Each is
// bounded; each checks what the kernel's locking promises; on the debug kernel a KASAN, KFENCE
// or lockdep report fails it through the console watchdog.
import type { ScenarioContext } from "../api/context.js";
import type { Scenario } from "../api/scenario.js";
import { opLine, type OpResult } from "../uapi/ops.js";
import { OpsStream } from "./ops-stream.js";

const NEEDS = ["kho", "luo", "luo-memfd"] as const;

/** The counts a race op answered with (its `race` object); a missing count is -1. */
function counts(r: OpResult): (key: string) => number {
  return (key) => r.race?.[key] ?? -1;
}

/** Checks every `[key, want]` of a race's counts; `want` a number (exact) or a minimum. */
function expectCounts(
  ctx: ScenarioContext,
  what: string,
  r: OpResult,
  exact: Record<string, number>,
  atLeast: Record<string, number> = {},
): void {
  const c = counts(r);
  const wrong = [
    ...Object.entries(exact)
      .filter(([k, v]) => c(k) !== v)
      .map(([k, v]) => `${k} ${c(k)} (must be ${v})`),
    ...Object.entries(atLeast)
      .filter(([k, v]) => c(k) < v)
      .map(([k, v]) => `${k} ${c(k)} (must be at least ${v})`),
  ];
  ctx.check(wrong.length === 0, `${what}: ${wrong.join(", ")}`, [JSON.stringify(r)]);
}

const SESSIONS = 8;
const TOKENS = 8;

const finishRetrieve: Scenario = {
  id: "race-finish-retrieve",
  description: `after kexec, ${SESSIONS} sessions each FINISHed by one process while another retrieves their ${TOKENS} memfds in a loop: files before FINISH intact, ENOENT after, nothing else`,
  needs: NEEDS,
  boot: { kho: true },
  async run(ctx) {
    const ops = new OpsStream(ctx);
    const names = Array.from({ length: SESSIONS }, (_, i) => `race-rf-${i}`);
    try {
      // slot 0 the device; session i in slot 1 + i; its memfds after them
      const setup = [opLine({ op: "open", slot: 0 })];
      let slot = 1 + SESSIONS;
      for (const [i, name] of names.entries()) {
        setup.push(opLine({ op: "create", dev: 0, slot: 1 + i, name, size: "exact" }));
        for (let t = 1; t <= TOKENS; t++)
          setup.push(
            opLine({ op: "memfd", slot, bytes: 4096, seed: t }),
            opLine({ op: "preserve", session: 1 + i, fd: slot++, token: String(t), size: "exact" }),
          );
      }
      const made = await ctx.phase("preserve", () => ops.batch(setup));
      const failed = made.find((r) => !r.ok);
      ctx.check(!failed, "preserving the sessions for the race failed", [JSON.stringify(failed)]);
      await ops.kexec();
      const races = await ctx.phase("race", () =>
        ops.batch([
          opLine({ op: "open", slot: 0 }),
          ...names.flatMap((name, i) => [
            opLine({ op: "retrieve", dev: 0, slot: 1 + i, name, size: "exact" }),
            `race_finish ${1 + i} ${TOKENS}`,
          ]),
        ]),
      );
      let ok = 0;
      let enoent = 0;
      for (const [i, name] of names.entries()) {
        const retrieved = races[1 + 2 * i];
        const race = races[2 + 2 * i];
        ctx.check(retrieved?.ok === true, `RETRIEVE_SESSION ${name} failed`, [JSON.stringify(retrieved)]);
        if (!race) continue;
        expectCounts(
          ctx,
          `${name}: RETRIEVE_FD racing FINISH`,
          race,
          { finish_errno: 0, other: 0, bad_content: 0, after_finish_ok: 0 },
          // the race happened: a file before FINISH, a whole pass of ENOENT after it
          { ok: 1, enoent: TOKENS },
        );
        ok += counts(race)("ok");
        enoent += counts(race)("enoent");
      }
      ctx.note(
        `${SESSIONS} sessions x ${TOKENS} memfds: ${ok} retrieves got an intact file before FINISH, ${enoent} got ENOENT after it; none succeeded after FINISH returned`,
        { kind: "race", race: "finish-retrieve", counts: { sessions: SESSIONS, ok, enoent } },
      );
    } finally {
      ops.close();
    }
  },
};

const MIN_PRESERVED = 20;

const preserveReboot: Scenario = {
  id: "race-preserve-reboot",
  description: `PRESERVE_FD and CREATE_SESSION from two threads while a third reboots into the next kernel (after ${MIN_PRESERVED} preserves): every file preserved before the serialization comes back, tokens without gaps, contents intact`,
  needs: NEEDS,
  boot: { kho: true },
  async run(ctx) {
    const ops = new OpsStream(ctx);
    try {
      await ops.must(opLine({ op: "open", slot: 0 }));
      await ops.must(opLine({ op: "create", dev: 0, slot: 1, name: "race-reboot", size: "exact" }));
      await ops.kexec(`race_reboot 0 1 race-side ${MIN_PRESERVED}`);
      await ops.must(opLine({ op: "open", slot: 0 }));
      const back = await ctx.phase("checks", () =>
        ops.must("race_reboot_check 0 race-reboot race-side", 120_000),
      );
      expectCounts(
        ctx,
        "what came back of the sessions mutated during the reboot",
        back,
        // the last side session may be empty: the reboot came between its create and its preserve
        { gaps: 0, bad_content: 0, other: 0, side_gaps: 0, side_empty_not_last: 0 },
        { files: MIN_PRESERVED, sides: 1 },
      );
      const c0 = counts(back);
      ctx.check(
        c0("side_empty") <= 1 && c0("side_files") === c0("sides") - c0("side_empty"),
        `side sessions that came back: ${c0("sides")}, with their memfd ${c0("side_files")}; only the last may be empty`,
        [JSON.stringify(back)],
      );
      const c = counts(back);
      ctx.note(
        `${c("files")} memfds preserved while the reboot began came back intact with tokens 1..${c("files")}; ${c("sides")} sessions created meanwhile came back, ${c("side_empty") ? "the last one empty (rebooted between its create and its preserve)" : "each with its memfd"}`,
        { kind: "race", race: "preserve-reboot", counts: back.race ?? {} },
      );
    } finally {
      ops.close();
    }
  },
};

const CLOSE_ITERATIONS = 50;

const closeIoctl: Scenario = {
  id: "race-close-ioctl",
  description: `${CLOSE_ITERATIONS} times each: CREATE_SESSION on /dev/liveupdate, and PRESERVE_FD on a session, while another thread closes that fd: only success or EBADF, the device opens again, a closed session's memfds are all unfrozen`,
  needs: NEEDS,
  boot: { kho: true },
  async run(ctx) {
    const ops = new OpsStream(ctx);
    try {
      const r = await ctx.phase("race", () => ops.must(`race_close ${CLOSE_ITERATIONS}`, 300_000));
      expectCounts(
        ctx,
        "ioctls racing close",
        r,
        { other: 0, frozen_after_close: 0, reopen_errno: 0 },
        { ok: 1, ebadf: 1, memfds: 1 },
      );
      const c = counts(r);
      ctx.note(
        `${2 * CLOSE_ITERATIONS} closes under running ioctls: ${c("ok")} ioctls succeeded, ${c("ebadf")} saw EBADF; ${c("memfds")} memfds of closed sessions all unfrozen; the device opened again`,
        { kind: "race", race: "close-ioctl", counts: r.race ?? {} },
      );
    } finally {
      ops.close();
    }
  },
};

export const RACE_SCENARIOS: readonly Scenario[] = [finishRetrieve, preserveReboot, closeIoctl];
