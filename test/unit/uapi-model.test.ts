// The model-based test's machinery (src/uapi), without a guest: a correct model answers as the
// "kernel", so a planted model error must be found, shrunk and replayed; the model itself is
// checked against sequences a real 7.2 guest answered (test/fixtures/uapi/).
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { firstMismatch, type Step } from "../../src/uapi/compare.js";
import { fuzzUapi, replayFlags, type OpsExecutor } from "../../src/uapi/fuzz.js";
import { LuoModel } from "../../src/uapi/model.js";
import { OpResultSchema, type Op, type OpResult } from "../../src/uapi/ops.js";

const sha = (n: number) => createHash("sha256").update(String(n)).digest("hex");

/** The "kernel" of these tests: a fresh correct model per sequence, answering as the agent would. */
function modelKernel(): OpsExecutor & { sequences: number } {
  const k = {
    sequences: 0,
    run(steps: readonly Step[]): Promise<OpResult[]> {
      k.sequences++;
      const m = new LuoModel();
      return Promise.resolve(
        steps.map(({ op }, i): OpResult => {
          const e = m.apply(op, i);
          if (!e.ok) return { op: op.op, ok: false, errno: 1, errname: e.errname };
          const described = ["memfd", "tmpfile", "grow", "retrieve_fd"].includes(op.op);
          return {
            op: op.op,
            ok: true,
            ...(described
              ? { file: { sha256: sha(e.contentOf ?? i), size: 0, ino: e.sameInodeAs ?? i } }
              : {}),
            ...(e.name !== undefined ? { name: e.name } : {}),
          };
        }),
      );
    },
  };
  return k;
}

describe("uapi model-based run", () => {
  it("finds nothing when the model answers for the kernel, in one kernel and across a kexec", async () => {
    for (const phase of ["basic", "kexec"] as const) {
      const o = await fuzzUapi(modelKernel(), { phase, runs: 150, seed: 42, maxCommands: 30 });
      expect(o.failure).toBeUndefined();
      expect(o.error).toBeUndefined();
      expect(o.ops).toBeGreaterThan(150);
      if (phase === "kexec") expect(o.kexecs).toBe(150);
    }
  });

  it("finds a planted model error, shrinks it to at most three ops, and replays it from the printed flags", async () => {
    const o = await fuzzUapi(modelKernel(), {
      phase: "basic",
      runs: 300,
      seed: 7,
      maxCommands: 30,
      plant: "empty-name-enoent",
    });
    const f = o.failure;
    expect(f, "the planted error was not found").toBeDefined();
    if (!f) return;
    expect(f.ops).toBeLessThanOrEqual(3);
    expect(f.mismatch.line).toMatch(/^create \d+ \d+ - exact$/);
    expect(f.mismatch).toMatchObject({ expected: "ENOENT", got: "EINVAL" });
    const flags = replayFlags(o);
    expect(flags).toContain(`--seed 7 --phase basic --path ${f.path}`);
    // the replay: one sequence, the same minimal one
    const kernel = modelKernel();
    const again = await fuzzUapi(kernel, {
      phase: "basic",
      runs: 300,
      seed: 7,
      maxCommands: 30,
      plant: "empty-name-enoent",
      path: f.path,
      ...(f.replayPath ? { replayPath: f.replayPath } : {}),
    });
    expect(kernel.sequences).toBe(1);
    expect(again.failure?.sequence).toEqual(f.sequence);
  });

  it("shrinks the planted error to at most three ops whatever the seed", async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const o = await fuzzUapi(modelKernel(), {
        phase: "basic",
        runs: 200,
        seed,
        plant: "empty-name-enoent",
      });
      expect(o.failure?.ops, `seed ${seed}`).toBeLessThanOrEqual(3);
      expect(o.failure?.sequence.length).toBe(o.failure?.ops);
    }
  });

  it("reports a harness error from the executor as an error, not a finding", async () => {
    const broken: OpsExecutor = { run: () => Promise.reject(new Error("the stream died")) };
    const o = await fuzzUapi(broken, { phase: "basic", runs: 5, seed: 1, maxCommands: 5 });
    expect(o.failure).toBeUndefined();
    expect(o.error?.message).toBe("the stream died");
  });

  it("says when a retrieved memfd's contents differ from what was preserved", () => {
    const m = new LuoModel();
    const ops: Op[] = [
      { op: "open", slot: 0 },
      { op: "create", dev: 0, slot: 1, name: "a", size: "exact" },
      { op: "memfd", slot: 2, bytes: 4096, seed: 1 },
      { op: "preserve", session: 1, fd: 2, token: "1", size: "exact" },
      { op: "kexec" },
      { op: "open", slot: 0 },
      { op: "retrieve", dev: 0, slot: 1, name: "a", size: "exact" },
      { op: "retrieve_fd", session: 1, slot: 2, token: "1", size: "exact" },
    ];
    const steps = ops.map((op, i) => ({ op, expect: m.apply(op, i) }));
    const file = { sha256: sha(1), size: 4096, ino: 5 };
    const results: OpResult[] = ops.map((op) => ({ op: op.op, ok: true }));
    results[2] = { op: "memfd", ok: true, file };
    results[7] = { op: "retrieve_fd", ok: true, file: { ...file, ino: 9 } };
    expect(firstMismatch(steps, results)).toBeUndefined();
    results[7] = { op: "retrieve_fd", ok: true, file: { ...file, ino: 9, sha256: sha(2) } };
    expect(firstMismatch(steps, results)).toMatchObject({ step: 7, line: "retrieve_fd 1 2 1 exact" });
  });
});

/** Sequences a real guest answered: the model must predict every answer. */
const FIXTURES = join(import.meta.dirname, "../fixtures/uapi");
describe("the model against recorded 7.2 guests", () => {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".json"));
  it("has recordings of both arches", () => {
    expect(files.some((f) => f.includes("x86_64"))).toBe(true);
    expect(files.some((f) => f.includes("arm64"))).toBe(true);
  });
  for (const file of files) {
    it(`predicts every answer of ${file}`, () => {
      const rec = JSON.parse(readFileSync(join(FIXTURES, file), "utf8")) as {
        sequences: { ops: Op[]; results: unknown[] }[];
      };
      const errnames = new Set<string>();
      const kinds = new Set<string>();
      let ops = 0;
      for (const seq of rec.sequences) {
        const m = new LuoModel();
        const steps = seq.ops.map((op, i) => ({ op, expect: m.apply(op, i) }));
        const results = seq.results.map((r) => OpResultSchema.parse(r));
        const miss = firstMismatch(steps, results);
        expect(miss, miss && `${miss.line}: expected ${miss.expected}, got ${miss.got}`).toBeUndefined();
        for (const r of results) if (!r.ok && r.errname) errnames.add(r.errname);
        for (const op of seq.ops) kinds.add(op.op);
        ops += steps.length;
      }
      // every op of the protocol, and the refusals, not only the happy path
      expect([...kinds].sort()).toEqual([
        "close",
        "create",
        "devnull",
        "finish",
        "fork",
        "get_name",
        "grow",
        "kexec",
        "kill",
        "memfd",
        "open",
        "pipe",
        "preserve",
        "raw",
        "reset",
        "retrieve",
        "retrieve_fd",
        "shmfile",
        "tmpfile",
      ]);
      expect(ops).toBeGreaterThan(300);
      expect([...errnames].sort()).toEqual(
        expect.arrayContaining(["E2BIG", "EBADF", "EBUSY", "EEXIST", "EINVAL", "ENOENT", "ENOTTY", "EPERM"]),
      );
    });
  }
});
