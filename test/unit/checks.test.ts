// The memfd and handover checks as pure functions: what was seen in, findings out, no guest.
import { describe, expect, it } from "vitest";
import type { AgentMemfd, AgentPreserveResult } from "../../src/agent/protocol.js";
import { expectedSha, type SeededSession } from "../../src/agent/memfd-args.js";
import { atKexecNotDone, handoverFindings, type HandoverSeen } from "../../src/checks/handover.js";
import { preservedFindings, restoredFindings } from "../../src/checks/memfd.js";
import type { DecodedKho } from "../../src/kho/abi.js";

const sessions: SeededSession[] = [{ name: "s", memfds: [{ token: 1, size: 8192, seed: 42n }] }];
const sha = expectedSha({ token: 1, size: 8192, seed: 42n });

const memfd = (over: Partial<AgentMemfd> = {}): AgentMemfd => ({
  token: "1",
  size: 8192,
  pos: 0,
  seals: 0,
  sha256: sha,
  page_size: 4096,
  pages: 2,
  pages_present: 2,
  pfns: [[0x100, 2]],
  kpageflags: { compound_head: 0, thp: 0, huge: 0, folio_orders: { "0": 2 } },
  ...over,
});
const result = (m: AgentMemfd, finished = true): AgentPreserveResult => ({
  ok: true,
  command: "restore",
  luo: true,
  boot_id: null,
  pid: 1,
  page_size: 4096,
  sessions: [{ name: "s", memfds: [m], finished }],
});
const failed = (findings: readonly { ok: boolean; check: string }[]) =>
  findings.filter((f) => !f.ok).map((f) => f.check);

describe("memfd checks", () => {
  it("boot 1: the host's model, by SHA-256 or by the frames the host read", () => {
    expect(failed(preservedFindings(sessions, result(memfd())))).toEqual([]);
    expect(failed(preservedFindings(sessions, result(memfd({ sha256: "0".repeat(64) }))))).toEqual([
      "preserve.contents",
    ]);
    expect(failed(preservedFindings(sessions, result(memfd({ pages_present: 1 }))))).toEqual([
      "preserve.frames-readable",
    ]);
    const hostRead = result(memfd({ sha256: null }));
    expect(failed(preservedFindings(sessions, hostRead, new Map([["s/1", undefined]])))).toEqual([]);
    const at = preservedFindings(sessions, hostRead, new Map([["s/1", 4097]])).find((f) => !f.ok);
    expect(at?.evidence).toEqual(["first byte that differs: offset 4097 of the file, frame 0x101"]);
    // a memfd the host was to read and did not is a failure, not a pass
    expect(failed(preservedFindings(sessions, hostRead))).toEqual(["preserve.contents"]);
    expect(failed(preservedFindings(sessions, { ...result(memfd()), sessions: [] }))).toEqual([
      "preserve.reported",
    ]);
  });

  it("boot 2: contents, position, seals, frames, folio orders and the session finished", () => {
    const before = result(memfd());
    const ok = restoredFindings(sessions, before, result(memfd()));
    expect(failed(ok.findings)).toEqual([]);
    expect(ok.totals).toEqual({ memfds: 1, bytes: 8192, frames: 2 });
    const moved = restoredFindings(sessions, before, result(memfd({ pfns: [[0x200, 2]] })));
    expect(failed(moved.findings)).toEqual(["memfd.frames"]);
    const split = memfd({ kpageflags: { compound_head: 1, thp: 1, huge: 0, folio_orders: { "1": 1 } } });
    expect(failed(restoredFindings(sessions, before, result(split)).findings)).toEqual(["memfd.folios"]);
    expect(failed(restoredFindings(sessions, before, result(memfd({ pos: 5, seals: 1 }))).findings)).toEqual([
      "memfd.pos",
      "memfd.seals",
    ]);
    expect(failed(restoredFindings(sessions, before, result(memfd(), false)).findings)).toEqual([
      "session.finished",
    ]);
    const model = memfd({
      sha256: null,
      expected: { size: 8192, sha256: null, match: false, first_mismatch: 9 },
    });
    expect(failed(restoredFindings(sessions, before, result(model)).findings)).toEqual(["memfd.contents"]);
  });
});

describe("handover checks", () => {
  const decoded = { preservedMemoryMap: 0x1000n, subtrees: [] } as unknown as DecodedKho;
  const seen = (over: Partial<HandoverSeen> = {}): HandoverSeen => ({
    decoded,
    missing: [],
    rootBeforeKexec: 0x1000n,
    atKexec: { kind: "read", sameFdt: true, evidence: [] },
    ...over,
  });

  it("root, tree, frames in the map and the FDT at the kexec", () => {
    expect(failed(handoverFindings(seen()))).toEqual([]);
    expect(failed(handoverFindings(seen({ rootBeforeKexec: 0x2000n })))).toEqual(["handover.radix-root"]);
    expect(failed(handoverFindings(seen({ missing: [0x5000n] })))).toEqual(["handover.frames-in-map"]);
    expect(
      failed(handoverFindings(seen({ atKexec: { kind: "read", sameFdt: false, evidence: [] } }))),
    ).toEqual(["handover.fdt-at-kexec"]);
    const broken = { ...decoded, preservedMemoryError: new Error("loop") } as unknown as DecodedKho;
    expect(failed(handoverFindings(seen({ decoded: broken })))).toEqual(["handover.radix-tree"]);
  });

  it("says why the at-kexec checks were not done, with the reason's kind", () => {
    expect(atKexecNotDone(seen())).toBeUndefined();
    expect(atKexecNotDone(seen({ atKexec: { kind: "late", detail: "banner first" } }))).toEqual({
      reason: "handover-pause-late",
      detail: "banner first",
    });
    expect(atKexecNotDone(seen({ atKexec: { kind: "failed", detail: "x" } }))?.reason).toBe(
      "handover-read-failed",
    );
    expect(atKexecNotDone(seen({ atKexec: { kind: "missed", detail: "x" } }))?.reason).toBe(
      "handover-missed",
    );
    // a read that was never asked for is not done either
    expect(atKexecNotDone(seen({ atKexec: { kind: "not-asked", detail: "dump" } }))?.reason).toBe(
      "handover-not-read",
    );
  });
});
