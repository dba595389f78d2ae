// The model-based run: fast-check generates command sequences, the model predicts each answer,
// an executor (the guest, or the model itself in unit tests) answers them, and a mismatch is
// shrunk to a minimal sequence that `kho fuzz-uapi --seed S --phase P --path X --replay-path R`
// replays exactly.
import fc from "fast-check";
import { firstMismatch, formatSequence, type Mismatch, type Step } from "./compare.js";
import { luoCommands, recordEpilogue, type ModelBox, type Recorder } from "./commands.js";
import { LuoModel, type Plant } from "./model.js";
import type { OpResult } from "./ops.js";

/** Runs a sequence from a clean LUO state and returns one answer per step. */
export interface OpsExecutor {
  run(steps: readonly Step[]): Promise<OpResult[]>;
}

/** "basic": sequences in one kernel. "kexec": each sequence kexecs once, and everything it
 *  handed over is retrieved and compared in the next kernel. */
export const PHASES = ["basic", "kexec"] as const;
export type Phase = (typeof PHASES)[number];

export interface FuzzOptions {
  readonly phase: Phase;
  readonly runs: number;
  readonly seed: number;
  /** fast-check's path of a counterexample: replay that one case. */
  readonly path?: string;
  /** fast-check's commands replay path (printed with the counterexample). */
  readonly replayPath?: string;
  /** Commands per sequence at most (default: fast-check's "medium" size, ~40 ops a sequence). */
  readonly maxCommands?: number;
  readonly plant?: Plant;
  /** Called after every sequence the executor ran (progress). */
  readonly onSequence?: (done: number, ops: number) => void;
}

export interface FuzzFailure {
  readonly mismatch: Mismatch;
  /** The minimal sequence up to the mismatch, as the agent's lines with what each answered. */
  readonly sequence: readonly string[];
  /** Its length (fast-check's shrunk sequence may go on past the mismatch, which the kernel's
   *  answer there cannot depend on). */
  readonly ops: number;
  readonly path: string;
  readonly replayPath: string | undefined;
  readonly shrinks: number;
}

export interface FuzzOutcome {
  readonly phase: Phase;
  readonly seed: number;
  readonly plant?: Plant;
  readonly runs: number;
  /** Ops the guest answered, over every run (shrinking included). */
  readonly ops: number;
  readonly kexecs: number;
  readonly failure?: FuzzFailure;
  /** A harness error (the executor threw): not a verdict on the kernel. */
  readonly error?: Error;
}

class ModelMismatch extends Error {
  constructor(readonly mismatch: Mismatch) {
    super(`step ${mismatch.step} ${mismatch.line}: expected ${mismatch.expected}, got ${mismatch.got}`);
  }
}

/** The replay command's extra flags for a failure. */
export function replayFlags(o: FuzzOutcome): string {
  const f = o.failure;
  if (!f) return "";
  const plant = o.plant ? ` --plant ${o.plant}` : "";
  return `--seed ${o.seed} --phase ${o.phase} --path ${f.path}${f.replayPath ? ` --replay-path ${f.replayPath}` : ""}${plant}`;
}

export async function fuzzUapi(exec: OpsExecutor, opts: FuzzOptions): Promise<FuzzOutcome> {
  let ops = 0;
  let kexecs = 0;
  let sequences = 0;
  let last: { steps: readonly Step[]; results: readonly OpResult[]; mismatch: Mismatch } | undefined;
  let harnessError: Error | undefined;
  const maxKexecs = opts.phase === "kexec" ? 1 : 0;
  const commands = fc.commands(luoCommands(opts.phase === "kexec" ? 4 : 1), {
    ...(opts.maxCommands ? { maxCommands: opts.maxCommands } : { size: "medium" as const }),
    ...(opts.replayPath ? { replayPath: opts.replayPath } : {}),
  });
  const property = fc.asyncProperty(commands, async (cmds) => {
    if (harnessError) return; // stop spending guest time once the harness failed
    const box: ModelBox = { m: new LuoModel(opts.plant), maxKexecs };
    const rec: Recorder = { steps: [] };
    fc.modelRun(() => ({ model: box, real: rec }), cmds);
    if (maxKexecs > 0) {
      if (box.m.kexecs === 0)
        rec.steps.push({ op: { op: "kexec" }, expect: box.m.apply({ op: "kexec" }, rec.steps.length) });
      recordEpilogue(box.m, rec);
    }
    let results: OpResult[];
    try {
      results = await exec.run(rec.steps);
    } catch (e) {
      harnessError = e instanceof Error ? e : new Error(String(e));
      return;
    }
    ops += results.length;
    kexecs += rec.steps.filter((s) => s.op.op === "kexec").length;
    opts.onSequence?.(++sequences, ops);
    const mismatch = firstMismatch(rec.steps, results);
    if (mismatch) {
      last = { steps: rec.steps, results, mismatch };
      throw new ModelMismatch(mismatch);
    }
  });
  const details = await fc.check(property, {
    seed: opts.seed,
    numRuns: opts.runs,
    ...(opts.path ? { path: opts.path, endOnFailure: true } : {}),
  });
  const outcome = {
    phase: opts.phase,
    seed: opts.seed,
    ...(opts.plant ? { plant: opts.plant } : {}),
    runs: details.numRuns,
    ops,
    kexecs,
  };
  if (harnessError) return { ...outcome, error: harnessError };
  if (!details.failed) return outcome;
  if (!last)
    return {
      ...outcome,
      error:
        details.errorInstance instanceof Error
          ? details.errorInstance
          : new Error(String(details.errorInstance)),
    };
  const shown = fc.stringify(details.counterexample);
  const replay = /replayPath="([^"]*)"/.exec(shown)?.[1];
  return {
    ...outcome,
    failure: {
      mismatch: last.mismatch,
      sequence: formatSequence(last.steps.slice(0, last.mismatch.step + 1), last.results),
      // an answer depends only on the ops before it: the prefix up to the mismatch reproduces it
      ops: last.mismatch.step + 1,
      path: details.counterexamplePath ?? "",
      replayPath: replay ?? opts.replayPath,
      shrinks: details.numShrinks,
    },
  };
}
