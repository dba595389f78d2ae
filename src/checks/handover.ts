// Checks of the handover as the host decoded it (memory/handover.ts): the radix root the new
// kernel got is the one the old kernel wrote, the tree decodes, every frame the scenario
// preserved is in it, the root FDT read at the kexec pause is the new kernel's in/fdt, and the
// LUO state handed over holds every session and memfd the agent preserved, on its frames.
import { pfnByPage, type AgentPreserveResult } from "../agent/protocol.js";
import { eachMemfd, type SessionSpec } from "../agent/memfd-args.js";
import { bad, expectThat, ok, type Finding, type NotDoneReason } from "../api/findings.js";
import type { DecodedKho } from "../kho/abi.js";
import { findMemfd, memfdKey } from "./memfd.js";

/** What the read at the kexec pause gave (memory/handover.ts, AtKexecOutcome). */
export type AtKexecSeen =
  | { readonly kind: "read"; readonly sameFdt: boolean; readonly evidence: readonly string[] }
  | { readonly kind: "not-asked" | "late" | "failed" | "missed"; readonly detail: string };

/** The decoded handover, as the checks see it. */
export interface HandoverSeen {
  readonly decoded: DecodedKho;
  /** Frames the scenario preserved that the map does not contain. */
  readonly missing: readonly bigint[];
  readonly rootBeforeKexec: bigint | undefined;
  readonly atKexec: AtKexecSeen;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** The map's own findings: root, tree, every claimed frame in it, in/fdt as left at the kexec. */
export function handoverFindings(h: HandoverSeen): Finding[] {
  const { decoded } = h;
  const out: Finding[] = [];
  if (h.rootBeforeKexec !== undefined) {
    out.push(
      expectThat(
        "handover.radix-root",
        decoded.preservedMemoryMap === h.rootBeforeKexec,
        `the new kernel got radix root ${hex(decoded.preservedMemoryMap)}, the old kernel's out/fdt had ${hex(h.rootBeforeKexec)}`,
      ),
    );
  }
  out.push(
    decoded.preservedMemoryError
      ? bad(
          "handover.radix-tree",
          `the preserved-memory radix tree does not decode: ${decoded.preservedMemoryError.message}`,
        )
      : ok("handover.radix-tree", "the preserved-memory radix tree decodes"),
  );
  out.push(
    expectThat(
      "handover.frames-in-map",
      h.missing.length === 0,
      `${h.missing.length} preserved frames are missing from the decoded KHO map`,
      h.missing.slice(0, 10).map(hex),
    ),
  );
  if (h.atKexec.kind === "read") {
    out.push(
      expectThat(
        "handover.fdt-at-kexec",
        h.atKexec.sameFdt,
        "the new kernel's kho/in/fdt differs from the root FDT the old kernel left at the kexec",
        h.atKexec.evidence,
      ),
    );
  }
  return out;
}

/**
 * Why the checks that need the handover as it was at the kexec (the root FDT's equality with
 * in/fdt, the LUO state) could not be done, if they could not.
 */
export function atKexecNotDone(h: HandoverSeen): { reason: NotDoneReason; detail: string } | undefined {
  const at = h.atKexec;
  switch (at.kind) {
    case "read":
      return undefined;
    case "late":
      return { reason: "handover-pause-late", detail: at.detail };
    case "missed":
      return { reason: "handover-missed", detail: at.detail };
    case "failed":
      return { reason: "handover-read-failed", detail: at.detail };
    case "not-asked":
      return { reason: "handover-not-read", detail: at.detail };
  }
}

const hexOrNone = (pfn: number | null | undefined) => (pfn == null ? "none" : `0x${pfn.toString(16)}`);

/**
 * The LUO state the old kernel handed over: every session and memfd the agent preserved, with the
 * size, position and seals the agent saw, and each serialized folio on the frame the agent saw
 * at its page of the file.
 */
export function luoFindings(
  decoded: DecodedKho,
  sessions: readonly SessionSpec[],
  before: AgentPreserveResult,
): { findings: Finding[]; folios: number } {
  const sub = decoded.subtrees.find((s) => s.name === "LUO");
  const luo = sub?.blob?.kind === "luo" ? sub.blob : undefined;
  if (!luo) {
    const why = sub
      ? `the handed-over LUO state does not decode: ${sub.error?.message ?? "not LUO"}`
      : "the handover has no LUO subtree";
    return { findings: [bad("luo.state", why)], folios: 0 };
  }
  const out: Finding[] = [];
  let folios = 0;
  for (const [s, spec] of eachMemfd(sessions)) {
    const where = memfdKey(s.name, spec.token);
    const session = luo.sessions?.find((x) => x.name === s.name);
    if (!session) {
      out.push(
        bad("luo.session", `the handed-over LUO state has no session ${s.name}`, [
          `sessions: ${(luo.sessions ?? []).map((x) => x.name).join(", ")}`,
        ]),
      );
      continue;
    }
    const file = session.files.find((f) => f.token === BigInt(spec.token));
    const seen = findMemfd(before, s.name, spec.token);
    if (!file?.memfd || !seen) {
      out.push(
        bad("luo.memfd", `the handed-over session ${s.name} has no memfd with token ${spec.token}`, [
          `files: ${session.files.map((f) => `${f.compatible} token 0x${f.token.toString(16)}`).join(", ")}`,
        ]),
      );
      continue;
    }
    const m = file.memfd;
    out.push(
      expectThat(
        "luo.memfd-state",
        m.size === BigInt(seen.size) && m.pos === BigInt(seen.pos) && m.seals === seen.seals,
        `memfd ${where}: the handed-over state says size ${m.size}, pos ${m.pos}, seals 0x${m.seals.toString(16)}; the agent saw ${seen.size}, ${seen.pos}, 0x${seen.seals.toString(16)}`,
      ),
    );
    const byPage = pfnByPage(seen.pfns ?? []);
    const wrong = (m.folioList ?? []).filter((f) => byPage[Number(f.index)] !== Number(f.pfn));
    out.push(
      expectThat(
        "luo.folios",
        m.folioList !== undefined && wrong.length === 0,
        `memfd ${where}: ${wrong.length} of ${m.folioList?.length ?? "?"} handed-over folios are not on the frame the agent saw at their page`,
        wrong
          .slice(0, 6)
          .map(
            (f) =>
              `page ${f.index}: handed over pfn 0x${f.pfn.toString(16)}, agent saw ${hexOrNone(byPage[Number(f.index)])}`,
          ),
      ),
    );
    folios += m.folioList?.length ?? 0;
  }
  return { findings: out, folios };
}
