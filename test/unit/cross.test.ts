import { describe, expect, it } from "vitest";
import { judgePair, pairId, pairTable, seriesPairs } from "../../src/orchestrate/cross.js";
import type { ScenarioResult } from "../../src/report/verdict.js";

const result = (id: string, verdict: ScenarioResult["verdict"], reason?: string): ScenarioResult => ({
  id,
  arch: "arm64",
  verdict,
  ...(reason ? { reason } : {}),
  phaseMs: {},
  totalMs: 1,
});

describe("cross-version pairs", () => {
  it("runs every ordered pair of distinct series, both directions", () => {
    expect(seriesPairs(["7.2", "7.3"])).toEqual([
      ["7.2", "7.3"],
      ["7.3", "7.2"],
    ]);
    expect(seriesPairs(["7.2", "7.3", "7.2"])).toHaveLength(2);
    expect(() => seriesPairs(["7.2"])).toThrow(/at least two different series/);
  });

  it("calls a pair compatible only when every scenario passed (or failed as expected)", () => {
    const ok = [
      result(pairId("test-kho", "7.2", "7.3"), "pass"),
      result("pages-dma-order9", "xfail", "known"),
    ];
    expect(judgePair("arm64", "7.2", "7.3", ok).abi).toBe("compatible");
    const broken = [...ok, result("memfd-basic[7.3->7.2]", "fail", "the session is missing after kexec")];
    const verdict = judgePair("arm64", "7.3", "7.2", broken);
    expect(verdict.abi).toBe("incompatible");
    expect(verdict.firstFailure).toEqual({
      id: "memfd-basic[7.3->7.2]",
      reason: "fail: the session is missing after kexec",
    });
    expect(judgePair("arm64", "7.2", "7.3", [result("x", "pass"), result("y", "skip", "no LUO")]).abi).toBe(
      "unproven",
    );
    expect(judgePair("arm64", "7.2", "7.3", []).abi).toBe("unproven");
    expect(pairTable([verdict])).toMatch(
      /^arm64 +7\.3 -> 7\.2 +INCOMPATIBLE +memfd-basic\[7\.3->7\.2\]: fail: /m,
    );
  });
});
