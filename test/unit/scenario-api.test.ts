// The scenario API as the runner implements it: parameters, inline expectations, findings
// recorded as checks, planned checks not done (accepted or failing the scenario), typed facts,
// the agent's JSON checked against its schema, and scenario selection by glob.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { AgentOutputError, parseAgentLine } from "../../src/agent/client.js";
import { AgentInfoSchema } from "../../src/agent/protocol.js";
import { bad, ok } from "../../src/api/findings.js";
import { CheckFailed } from "../../src/api/outcome.js";
import { activeExpectation, machineTargetSkip, withParams, type Scenario } from "../../src/api/scenario.js";
import { hostMemory } from "../../src/scenarios/memfd-common.js";
import { corruptScenarios } from "../../src/scenarios/corrupt.js";
import { HarnessError } from "../../src/errors.js";
import { RunContext } from "../../src/orchestrate/context.js";
import { withUndoneChecks } from "../../src/orchestrate/scenario-run.js";
import { selectScenarios } from "../../src/scenarios/index.js";
import type { GuestSession } from "../../src/session/session.js";

const scenario: Scenario = {
  id: "s",
  description: "s",
  needs: [],
  boot: { kho: true },
  params: { hops: 3 },
  acceptNotDone: ["handover-pause-late"],
  expectation: { unless: "kho-unsplit-pages", reason: "known bug", consoleLines: [] },
  run: () => Promise.resolve(),
};

/** A context whose guest answers every command with `stdout`. */
function context(stdout = "", s: Pick<Scenario, "params" | "acceptNotDone"> = scenario): RunContext {
  const guest = { exec: () => Promise.resolve({ code: 0, signal: null, stdout, stderr: "" }) };
  return new RunContext(
    s,
    "x86_64",
    guest as unknown as GuestSession,
    {} as never,
    "/nonexistent",
    () => undefined,
    1024,
  );
}

describe("scenario declarations", () => {
  it("withParams sets declared parameters and refuses unknown names and other types", () => {
    expect(withParams(scenario, { hops: 5 }).params).toEqual({ hops: 5 });
    expect(context("", withParams(scenario, { hops: 5 })).params.hops).toBe(5);
    expect(() => withParams(scenario, { hop: 5 })).toThrow(/s has no parameter "hop" \(it has: hops\)/);
    expect(() => withParams(scenario, { hops: "5" })).toThrow(/is a number, not "5"/);
  });

  it("the expectation holds only while the kernel lacks its feature", () => {
    expect(activeExpectation(scenario, new Set())?.reason).toBe("known bug");
    expect(activeExpectation(scenario, new Set(["kho-unsplit-pages"]))).toBeUndefined();
  });

  it("selects by id and glob, in suite order, and names unknown patterns", () => {
    expect(selectScenarios("memfd-basic,test-kho").map((s) => s.id)).toEqual(["test-kho", "memfd-basic"]);
    expect(selectScenarios("pages-*-order9").map((s) => s.id)).toEqual([
      "pages-folio-order9",
      "pages-split-order9",
      "pages-dma-order9",
    ]);
    expect(() => selectScenarios("nope*")).toThrow(/no scenario matches "nope\*"/);
  });
});

describe("findings and planned checks", () => {
  it("expect records every check once and fails at the first finding that is not ok", () => {
    const ctx = context();
    expect(() =>
      ctx.expect([
        ok("a", "fine"),
        ok("b", "fine"),
        bad("b", "b broke", ["ev"]),
        bad("c", "c broke"),
        bad("b", "again"),
      ]),
    ).toThrow(new CheckFailed("b broke", ["ev"]));
    expect(ctx.checks).toEqual([
      { check: "a", status: "passed" },
      { check: "b", status: "failed", detail: "b broke" },
      { check: "c", status: "failed", detail: "c broke" },
    ]);
    expect(() => ctx.expect([ok("d", "fine"), ok("a", "fine again")])).not.toThrow();
    expect(ctx.checks.map((c) => c.check)).toEqual(["a", "b", "c", "d"]);
  });

  it("a check not done is accepted only for a reason the scenario declares", () => {
    const ctx = context();
    ctx.notDone("luo.handover", "handover-pause-late", "late");
    ctx.notDone("handover.fdt-at-kexec", "handover-read-failed", "read failed");
    expect(ctx.checks.map((c) => [c.check, c.accepted])).toEqual([
      ["luo.handover", true],
      ["handover.fdt-at-kexec", false],
    ]);
  });

  it("on a machine target, checks that need host memory are not done there: listed, accepted, never passed", () => {
    const ctx = context(); // its guest has no `machine`: a machine target's
    expect(hostMemory(ctx, ["memfd.frames-by-host", "luo.handover"])).toBeUndefined();
    expect(ctx.checks).toEqual([
      expect.objectContaining({
        check: "memfd.frames-by-host",
        status: "not-done",
        notDone: "not-on-target",
        accepted: true,
      }),
      expect.objectContaining({
        check: "luo.handover",
        status: "not-done",
        notDone: "not-on-target",
        accepted: true,
      }),
    ]);
    expect(withUndoneChecks(["pass", undefined, []], ctx.checks)[0]).toBe("pass");
    // a guest the harness started: its QEMU process, nothing recorded
    const qemu = { pid: 1, qmp: {} };
    const own = new RunContext(
      scenario,
      "x86_64",
      { machine: qemu } as unknown as GuestSession,
      {} as never,
      "/x",
      () => undefined,
      1024,
    );
    expect(hostMemory(own, ["luo.handover"])).toBe(qemu);
    expect(own.checks).toEqual([]);
  });

  it("a machine target skips what only a guest the harness starts gives, each with its reason", () => {
    const base = { ...scenario, expectation: undefined };
    expect(machineTargetSkip(base, false)).toBeUndefined();
    expect(machineTargetSkip({ ...base, boot: { kho: false } }, true)).toMatch(/^boots with KHO off/);
    expect(machineTargetSkip({ ...base, boot: { kho: true, memoryMiB: 6144 } }, true)).toBe(
      "needs a guest of 6144 MiB",
    );
    expect(machineTargetSkip({ ...base, boot: { kho: true, numaNodes: 2, memoryMiB: 2048 } }, true)).toBe(
      "needs a guest with 2 NUMA nodes",
    );
    expect(machineTargetSkip({ ...base, boot: { kho: true, append: "hugepages=4" } }, true)).toMatch(
      /^boots with `hugepages=4`/,
    );
    expect(machineTargetSkip({ ...base, nextKernel: "max-order-9" }, true)).toMatch(
      /max-order-9 kernel variant/,
    );
    expect(machineTargetSkip({ ...base, needsQemu: "it reads frames" }, true)).toBe(
      "needs a guest the harness starts: it reads frames",
    );
    expect(machineTargetSkip({ ...base, needsConsole: true }, false)).toMatch(/--console-cmd/);
    expect(machineTargetSkip({ ...base, needsConsole: true }, true)).toBeUndefined();
    // every scenario that reads guest memory through QEMU outside memfd-common says so
    const suite = [
      ...selectScenarios("memfd-holder-died,kexec-traffic,numa-*,reserve-mem,pages-next-max-order"),
      ...corruptScenarios(),
    ];
    for (const s of suite) expect(machineTargetSkip(s, true), s.id).toBeDefined();
  });

  it("an unaccepted check not done turns a pass into a failure naming it; accepted ones do not", () => {
    const ctx = context();
    ctx.notDone("luo.handover", "handover-pause-late", "late");
    expect(withUndoneChecks(["pass", "notes", []], ctx.checks)).toEqual(["pass", "notes", []]);
    ctx.notDone("handover.fdt-at-kexec", "handover-read-failed", "the read gave nothing");
    const [verdict, reason, evidence] = withUndoneChecks(["pass", "notes", []], ctx.checks);
    expect(verdict).toBe("error"); // a read that failed is the harness's doing
    expect(reason).toBe(
      "planned check handover.fdt-at-kexec was not done (handover-read-failed: the read gave nothing)",
    );
    expect(evidence).toEqual([
      "not done: handover.fdt-at-kexec: handover-read-failed: the read gave nothing",
    ]);
    // a failure keeps its own reason
    expect(withUndoneChecks(["fail", "frames moved", ["x"]], ctx.checks)).toEqual([
      "fail",
      "frames moved",
      ["x"],
    ]);
  });

  it("notes may carry typed facts; facts may stand alone", () => {
    const ctx = context();
    ctx.note("kexec blackout 5 s", { kind: "blackout", step: "kexec", totalMs: 5000 });
    ctx.fact({ kind: "errno", operation: "retrieve_session", errname: "ENOENT" });
    expect(ctx.notes).toEqual(["kexec blackout 5 s"]);
    expect(ctx.facts.map((f) => f.kind)).toEqual(["blackout", "errno"]);
  });
});

describe("the agent's JSON, checked when parsed", () => {
  const info = {
    ok: true,
    command: "info",
    boot_id: "b",
    release: "7.2",
    cmdline: "x",
    liveupdate_dev: true,
    page_size: 4096,
  };

  it("a line matching the command's schema is returned typed; an error object as an error", async () => {
    expect(parseAgentLine(AgentInfoSchema, JSON.stringify(info), "kho-agent info")).toEqual(info);
    const err = {
      ok: false,
      command: "preserve",
      error: "x",
      errno: 2,
      errname: "ENOENT",
      step: "create_session",
    };
    expect(parseAgentLine(AgentInfoSchema, JSON.stringify(err), "kho-agent preserve")).toEqual(err);
    await expect(context(JSON.stringify(err)).agent("preserve", AgentInfoSchema)).rejects.toThrow(
      "kho-agent preserve failed at create_session: x (ENOENT)",
    );
  });

  it("a field of the wrong type is a harness error naming the field, not a cast", () => {
    const wrong = JSON.stringify({ ...info, page_size: "4096" });
    expect(() => parseAgentLine(AgentInfoSchema, wrong, "kho-agent info")).toThrow(HarnessError);
    expect(() => parseAgentLine(AgentInfoSchema, wrong, "kho-agent info")).toThrow(
      'kho-agent info printed JSON the host does not expect: page_size should be a number, got "4096"',
    );
    const nested = z.object({ a: z.array(z.object({ n: z.number() })) });
    expect(() => parseAgentLine(nested, '{"a":[{"n":1},{}]}', "cmd")).toThrow(
      /a\[1\]\.n should be a number, got missing/,
    );
  });

  it("a line that is not JSON is the guest's doing: a failed check with the line and stderr", async () => {
    expect(() => parseAgentLine(AgentInfoSchema, "Segmentation fault", "kho-agent info", "oops")).toThrow(
      new AgentOutputError("kho-agent info did not print JSON", ["Segmentation fault", "oops"]),
    );
    await expect(context("Segmentation fault").agent("info", AgentInfoSchema)).rejects.toThrow(
      new CheckFailed("kho-agent info did not print JSON", ["Segmentation fault"]),
    );
  });
});
