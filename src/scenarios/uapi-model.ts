// `kho fuzz-uapi`: /dev/liveupdate under generated operation sequences, every answer predicted
// by the model in src/uapi/model.ts. The guest's agent runs each sequence in one batch on one
// stream (`kho-agent ops`); a kexec in a sequence goes through that stream, and a new one is
// started in the next kernel. A mismatch fails the scenario with the minimal sequence and the
// flags that replay it.
import type { ScenarioContext } from "../api/context.js";
import type { Scenario } from "../api/scenario.js";
import { VALID_NAMES } from "../uapi/commands.js";
import type { Step } from "../uapi/compare.js";
import { fuzzUapi, replayFlags, PHASES, type OpsExecutor, type Phase } from "../uapi/fuzz.js";
import { PLANTS, type Plant } from "../uapi/model.js";
import { opLine, type Op, type OpResult } from "../uapi/ops.js";
import { OpsStream } from "./ops-stream.js";

/** Brings LUO back to nothing: no fds, no children, no session handed over by a kexec. */
function resetLines(): string[] {
  const drain = VALID_NAMES.flatMap((name): Op[] => [
    { op: "retrieve", dev: 0, slot: 1, name, size: "exact" },
    { op: "finish", session: 1, reserved: 0, size: "exact" },
    { op: "close", slot: 1 },
  ]);
  const ops: Op[] = [{ op: "reset" }, { op: "open", slot: 0 }, ...drain, { op: "close", slot: 0 }];
  return ops.map(opLine);
}

/** The guest as an OpsExecutor: a reset, then the sequence, split at its kexecs. */
class GuestOps implements OpsExecutor {
  private readonly ops: OpsStream;
  /** Every sequence with the guest's answers: an artifact, and golden vectors for the model's tests. */
  readonly recorded: { ops: Op[]; results: OpResult[] }[] = [];
  constructor(ctx: ScenarioContext) {
    this.ops = new OpsStream(ctx);
  }

  async run(steps: readonly Step[]): Promise<OpResult[]> {
    const reset = await this.ops.batch(resetLines());
    const bad = reset.find((r, i) => r.bad_line || (i < 2 && !r.ok));
    if (bad) throw new Error(`resetting LUO before a sequence failed: ${JSON.stringify(bad)}`);
    const results: OpResult[] = [];
    let segment: Op[] = [];
    for (const { op } of steps) {
      if (op.op !== "kexec") {
        segment.push(op);
        continue;
      }
      results.push(...(await this.ops.batch(segment.map(opLine))));
      segment = [];
      await this.ops.kexec();
      results.push({ op: "kexec", ok: true });
    }
    results.push(...(await this.ops.batch(segment.map(opLine))));
    this.recorded.push({ ops: steps.map((s) => s.op), results });
    return results;
  }

  close(): void {
    this.ops.close();
  }
}

function phasesOf(p: string): Phase[] {
  if (p === "both") return [...PHASES];
  if ((PHASES as readonly string[]).includes(p)) return [p as Phase];
  throw new TypeError(`phase "${p}" is not basic, kexec or both`);
}

type UapiParams = {
  readonly runs: number;
  readonly kexecRuns: number;
  readonly seed: number;
  readonly phase: string;
  readonly path: string;
  readonly replayPath: string;
  readonly plant: string;
  readonly maxCommands: number;
};

export const UAPI_MODEL_DEFAULTS: UapiParams = {
  /** Sequences in one kernel. */
  runs: 200,
  /** Sequences that kexec once (each ~a boot under TCG). */
  kexecRuns: 4,
  seed: 1,
  phase: "both",
  path: "",
  replayPath: "",
  /** A deliberate model error (model.ts PLANTS), to show that mismatches are found. */
  plant: "",
  /** Commands per sequence at most; 0: fast-check's "medium" size (about 40 ops). */
  maxCommands: 0,
};

export const uapiModel: Scenario = {
  id: "uapi-model",
  description:
    "generated /dev/liveupdate operation sequences (sessions, every fd kind, sizes, reserved fields, bad ioctls, fork/kill, kexec) checked op by op against a model of the kernel's source; a mismatch is shrunk and replayable",
  needs: ["kho", "luo", "luo-memfd"],
  boot: { kho: true },
  params: UAPI_MODEL_DEFAULTS,
  deadlineMs: 15 * 60_000,
  async run(ctx) {
    const p = { ...UAPI_MODEL_DEFAULTS, ...ctx.params };
    const plant = p.plant === "" ? undefined : (p.plant as Plant);
    if (plant && !PLANTS.includes(plant))
      throw new TypeError(`plant "${p.plant}" is not one of ${PLANTS.join(", ")}`);
    ctx.note(`seed ${p.seed}`);
    const exec = new GuestOps(ctx);
    try {
      for (const phase of phasesOf(p.phase)) {
        const runs = phase === "kexec" ? p.kexecRuns : p.runs;
        if (runs === 0) continue;
        const outcome = await ctx.phase(`fuzz ${phase}`, () =>
          fuzzUapi(exec, {
            phase,
            runs,
            seed: p.seed,
            ...(p.maxCommands ? { maxCommands: p.maxCommands } : {}),
            ...(p.path ? { path: p.path } : {}),
            ...(p.replayPath ? { replayPath: p.replayPath } : {}),
            ...(plant ? { plant } : {}),
            onSequence: (done, ops) => {
              if (done % 50 === 0)
                ctx.log(`# ${ctx.arch}: fuzz-uapi ${phase}: ${done} sequences, ${ops} ops`);
            },
          }),
        );
        await ctx.artifact(
          `uapi-${phase}-sequences.json`,
          JSON.stringify({ sequences: exec.recorded.splice(0) }),
        );
        if (outcome.error) throw outcome.error;
        const f = outcome.failure;
        const replay = f ? replayFlags(outcome) : undefined;
        ctx.note(
          `${phase}: ${outcome.runs} sequences, ${outcome.ops} ops, ${outcome.kexecs} kexecs${f ? `; mismatch shrunk to ${f.ops} ops` : ", every answer as the model predicts"}`,
          {
            kind: "uapi-model",
            phase,
            seed: p.seed,
            runs: outcome.runs,
            ops: outcome.ops,
            kexecs: outcome.kexecs,
            ...(f && replay ? { replay, minimalOps: f.ops } : {}),
          },
        );
        if (f) {
          await ctx.artifact(`uapi-${phase}-minimal.txt`, `${f.sequence.join("\n")}\n`);
          ctx.check(
            false,
            `/dev/liveupdate answered otherwise than the model: ${f.mismatch.line} expected ${f.mismatch.expected}, got ${f.mismatch.got}; replay: kho fuzz-uapi --arch ${ctx.arch} ${replay}`,
            [...f.sequence],
          );
        }
        if (phase === "kexec")
          ctx.check(
            outcome.kexecs > 0,
            "the kexec phase ran no kexec: nothing was checked across a handover",
          );
      }
    } finally {
      exec.close();
    }
  },
};
