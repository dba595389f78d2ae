// The memfd scenarios' check (a pure function to findings) of the LUO state the old kernel handed over (decoded by the host
// from guest memory at the kexec) against what the agent saw before it.
import { describe, expect, it } from "vitest";
import type { AgentMemfd, AgentPreserveResult } from "../../src/agent/protocol.js";
import type { DecodedKho, LuoState, MemfdFolio } from "../../src/kho/abi.js";
import type { SessionSpec } from "../../src/agent/memfd-args.js";
import { luoFindings } from "../../src/checks/handover.js";
const sessions: SessionSpec[] = [{ name: "s", memfds: [{ token: 1, size: 4 * 4096 }] }];

/** The agent's view: 4 pages on frames 0x100, 0x101, then 0x200, 0x201. */
const memfd: AgentMemfd = {
  token: "1",
  size: 4 * 4096,
  pos: 0,
  seals: 1,
  sha256: null,
  page_size: 4096,
  pages: 4,
  pages_present: 4,
  pfns: [
    [0x100, 2],
    [0x200, 2],
  ],
};
const before = {
  ok: true,
  command: "preserve",
  sessions: [{ name: "s", fd: 3, memfds: [memfd] }],
} as unknown as AgentPreserveResult;

function decoded(folioList: MemfdFolio[], opts: { session?: string; size?: bigint } = {}): DecodedKho {
  const luo: LuoState = {
    kind: "luo",
    compatible: "luo-v5",
    liveupdateNum: 1n,
    sessionsPa: 0x1000n,
    flbsPa: 0n,
    sessions: [
      {
        name: opts.session ?? "s",
        files: [
          {
            compatible: "memfd-v2",
            data: 0x2000n,
            token: 1n,
            memfd: {
              pos: 0n,
              size: opts.size ?? 4n * 4096n,
              seals: 1,
              flags: 0,
              nrFolios: BigInt(folioList.length),
              folios: {} as never,
              folioList,
            },
          },
        ],
      },
    ],
  };
  return {
    subtrees: [{ name: "LUO", phys: 0x3000n, size: 32n, node: {} as never, blob: luo }],
  } as unknown as DecodedKho;
}

const folio = (index: number, pfn: number): MemfdFolio => ({
  index: BigInt(index),
  pfn: BigInt(pfn),
  flags: 2,
});
const good = [folio(0, 0x100), folio(1, 0x101), folio(2, 0x200), folio(3, 0x201)];

/** The findings that are not ok. */
const failures = (d: DecodedKho) => luoFindings(d, sessions, before).findings.filter((f) => !f.ok);

describe("luoFindings", () => {
  it("passes when every session, memfd and folio is as the agent saw it", () => {
    const r = luoFindings(decoded(good), sessions, before);
    expect(r.folios).toBe(4);
    expect(r.findings.map((f) => [f.check, f.ok])).toEqual([
      ["luo.memfd-state", true],
      ["luo.folios", true],
    ]);
  });

  it("a large folio is checked at its head page", () => {
    expect(failures(decoded([folio(0, 0x100), folio(2, 0x200)]))).toEqual([]);
  });

  it("fails on a folio handed over on another frame, naming the page", () => {
    const bad = [...good.slice(0, 3), folio(3, 0x999)];
    const [f, ...rest] = failures(decoded(bad));
    expect(rest).toEqual([]);
    expect(f?.check).toBe("luo.folios");
    expect(f?.evidence).toEqual(["page 3: handed over pfn 0x999, agent saw 0x201"]);
  });

  it("fails on a size the agent did not see, a missing session, and an undecodable LUO blob", () => {
    expect(failures(decoded(good, { size: 4096n })).map((f) => [f.check, f.message])).toEqual([
      ["luo.memfd-state", expect.stringMatching(/size 4096/)],
    ]);
    expect(failures(decoded(good, { session: "other" })).map((f) => [f.check, f.message])).toEqual([
      ["luo.session", "the handed-over LUO state has no session s"],
    ]);
    const freed = { subtrees: [{ name: "LUO", error: { message: "LUO ABI t\tH is not supported" } }] };
    expect(failures(freed as unknown as DecodedKho).map((f) => [f.check, f.message])).toEqual([
      ["luo.state", expect.stringMatching(/does not decode/)],
    ]);
  });
});
