// Checks of memfds, as pure functions from what was seen (the agent's reports before and after
// the kexec, the host's reading of the frames) to findings. Boot 1: the agent filled every
// memfd as the host's model says. Boot 2: every memfd came back with the expected contents, its
// size, position and seals, on the very frames it had, in folios of the same orders.
import { pfnByPage, type AgentMemfd, type AgentPreserveResult } from "../agent/protocol.js";
import { eachMemfd, expectedSha, type SeededSession } from "../agent/memfd-args.js";
import { bad, expectThat, type Finding } from "../api/findings.js";

export function findMemfd(
  r: AgentPreserveResult,
  session: string,
  token: number | bigint,
): AgentMemfd | undefined {
  return r.sessions.find((s) => s.name === session)?.memfds.find((m) => m.token === String(token));
}

export const framesText = (m: AgentMemfd): string => JSON.stringify(m.pfns);

/** Where the host's read of a memfd's frames first differed from its model (file offset). */
export type FrameMismatches = ReadonlyMap<string, number | undefined>;

/** `session/token`: how checks and FrameMismatches name a memfd. */
export const memfdKey = (session: string, token: number | bigint | string): string => `${session}/${token}`;

/** Which memfds of `r` the agent did not read back: the host reads their frames instead. */
export function memfdsReadByHost(r: AgentPreserveResult): string[] {
  return r.sessions.flatMap((s) =>
    s.memfds
      .filter((m) => m.sha256 === null && m.expected === undefined)
      .map((m) => memfdKey(s.name, m.token)),
  );
}

/**
 * Boot 1: every memfd is reported at its size with every frame readable, and holds the host's
 * model: its SHA-256 as the agent read it, or (for a memfd the agent did not read) the frames
 * the host read from guest memory (`mismatches`, from memory/memfd-frames.ts).
 */
export function preservedFindings(
  sessions: readonly SeededSession[],
  r: AgentPreserveResult,
  mismatches: FrameMismatches = new Map(),
): Finding[] {
  const out: Finding[] = [];
  for (const [s, spec] of eachMemfd(sessions)) {
    const where = memfdKey(s.name, spec.token);
    const m = findMemfd(r, s.name, spec.token);
    if (!m) {
      out.push(
        bad("preserve.reported", `the agent reported no memfd ${where}`, [JSON.stringify(r).slice(0, 400)]),
      );
      continue;
    }
    out.push(
      expectThat(
        "preserve.size",
        m.size === spec.size,
        `memfd ${where}: size ${m.size}, wanted ${spec.size}`,
      ),
    );
    out.push(
      expectThat(
        "preserve.frames-readable",
        m.pfns !== null && m.pages_present === m.pages,
        `memfd ${where}: the agent could not read every frame (${m.pages_present} of ${m.pages})`,
        [framesText(m)],
      ),
    );
    if (m.sha256 === null && m.expected === undefined) {
      if (!mismatches.has(where)) {
        out.push(bad("preserve.contents", `memfd ${where}: the host did not read its frames`));
        continue;
      }
      const at = mismatches.get(where);
      const frame = pfnByPage(m.pfns ?? [])[Math.floor((at ?? 0) / m.page_size)] ?? 0;
      out.push(
        expectThat(
          "preserve.contents",
          at === undefined,
          `memfd ${where}: guest memory holds other bytes than the host computed`,
          [`first byte that differs: offset ${at ?? "?"} of the file, frame 0x${frame.toString(16)}`],
        ),
      );
      continue;
    }
    const want = expectedSha(spec);
    out.push(
      expectThat(
        "preserve.contents",
        m.sha256 === want,
        `memfd ${where}: the guest wrote other bytes than the host computed`,
        [`guest ${m.sha256}`, `host  ${want}`],
      ),
    );
  }
  return out;
}

export interface RestoredTotals {
  readonly memfds: number;
  readonly bytes: number;
  readonly frames: number;
}

/** Boot 2: contents, size, position, seals, frames and folio orders as before; sessions finished. */
export function restoredFindings(
  sessions: readonly SeededSession[],
  before: AgentPreserveResult,
  after: AgentPreserveResult,
): { findings: Finding[]; totals: RestoredTotals } {
  const out: Finding[] = [];
  let bytes = 0;
  let frames = 0;
  for (const [s, spec] of eachMemfd(sessions)) {
    const where = memfdKey(s.name, spec.token);
    const pre = findMemfd(before, s.name, spec.token);
    const post = findMemfd(after, s.name, spec.token);
    if (!pre || !post) {
      out.push(bad("memfd.reported", `memfd ${where} is missing from the agent's report`));
      continue;
    }
    out.push(
      expectThat(
        "memfd.size",
        post.size === pre.size,
        `memfd ${where}: restored size ${post.size}, preserved ${pre.size}`,
      ),
    );
    if (post.sha256 === null) {
      // nohash: the agent compared every byte with the model (which boot 1's check tied to
      // ours); the host's SHA-256 of its model is evidence only, computed only when needed
      out.push(
        post.expected?.match === true
          ? { check: "memfd.contents", ok: true, message: `memfd ${where}: every byte as the model says` }
          : bad("memfd.contents", `memfd ${where}: the contents changed across kexec`, [
              `first byte that differs from the model: ${post.expected?.first_mismatch ?? "?"}`,
              `expected ${expectedSha(spec)}`,
              `model    ${post.expected?.sha256 ?? "?"}`,
            ]),
      );
    } else {
      const want = expectedSha(spec);
      out.push(
        expectThat(
          "memfd.contents",
          post.sha256 === want,
          `memfd ${where}: the contents changed across kexec`,
          [`expected ${want}`, `before   ${pre.sha256}`, `after    ${post.sha256}`],
        ),
      );
    }
    out.push(
      expectThat(
        "memfd.pos",
        post.pos === pre.pos,
        `memfd ${where}: file position ${post.pos}, preserved ${pre.pos}`,
      ),
    );
    out.push(
      expectThat(
        "memfd.seals",
        post.seals === pre.seals,
        `memfd ${where}: seals 0x${post.seals.toString(16)}, preserved 0x${pre.seals.toString(16)}`,
      ),
    );
    out.push(
      expectThat(
        "memfd.frames",
        framesText(post) === framesText(pre),
        `memfd ${where} came back on other physical frames (in-place preservation broken)`,
        [`before ${framesText(pre)}`.slice(0, 800), `after  ${framesText(post)}`.slice(0, 800)],
      ),
    );
    const orders = (m: AgentMemfd) => JSON.stringify(m.kpageflags?.folio_orders ?? null);
    out.push(
      expectThat(
        "memfd.folios",
        orders(post) === orders(pre),
        `memfd ${where}: folio sizes changed across kexec`,
        [`before ${orders(pre)}`, `after  ${orders(post)}`],
      ),
    );
    bytes += pre.size;
    frames += pre.pages_present;
  }
  for (const s of sessions) {
    out.push(
      expectThat(
        "session.finished",
        after.sessions.find((x) => x.name === s.name)?.finished === true,
        `session ${s.name} could not be finished after retrieval`,
      ),
    );
  }
  return { findings: out, totals: { memfds: eachMemfd(sessions).length, bytes, frames } };
}
