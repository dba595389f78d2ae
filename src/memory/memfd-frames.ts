// The host's own reading of a memfd: its frames (as the agent's pagemap gave them) read from
// guest memory and compared with the host's model of the agent's fill. The models of small
// memfds are computed while the agent fills them.
import { pfnByPage, type AgentMemfd } from "../agent/protocol.js";
import { eachMemfd, layoutOf, MiB, type SeededMemfd, type SeededSession } from "../agent/memfd-args.js";
import { memfdModel } from "../agent/model.js";
import type { PhysMemory } from "../kho/abi.js";

/** Whole models computed ahead (prepareModels), by modelKey; only memfds up to MODEL_AHEAD. */
export type ModelsAhead = ReadonlyMap<string, Uint8Array>;
const MODEL_AHEAD = 16 * MiB;

export const modelKey = (m: SeededMemfd): string => JSON.stringify([String(m.seed), m.size, layoutOf(m)]);

/**
 * Computes the models of the memfds the boot-1 check will compare with guest memory while the
 * agent fills them (the host waits on SSH meanwhile), 1 MiB at a time so that SSH traffic is
 * served in between: the model is most of that check's time (4 MiB: 20-50 ms).
 */
export async function prepareModels(sessions: readonly SeededSession[]): Promise<ModelsAhead> {
  const models = new Map<string, Uint8Array>();
  for (const [, spec] of eachMemfd(sessions)) {
    if (spec.size > MODEL_AHEAD || spec.size === 0) continue;
    const bytes = new Uint8Array(spec.size);
    for (let off = 0; off < spec.size; off += MiB) {
      await new Promise((resolve) => setImmediate(resolve));
      bytes.set(memfdModel(spec.seed, spec.size, layoutOf(spec), off, Math.min(MiB, spec.size - off)), off);
    }
    models.set(modelKey(spec), bytes);
  }
  return models;
}

/**
 * Reads a memfd's frames from guest memory, a run of contiguous frames at a time, and compares
 * them with the host's model of the file (`ahead`: the whole model, already computed). Returns
 * the offset in the file of the first byte that differs, or undefined.
 */
export async function firstFrameMismatch(
  memory: PhysMemory,
  spec: SeededMemfd,
  m: AgentMemfd,
  ahead?: Uint8Array,
): Promise<number | undefined> {
  const page = m.page_size;
  const byPage = pfnByPage(m.pfns ?? []);
  const MAX_RUN = 256; // pages per read: 1 MiB
  for (let i = 0; i < byPage.length;) {
    const pfn = byPage[i];
    if (pfn == null) return i * page;
    let n = 1;
    while (n < MAX_RUN && i + n < byPage.length && byPage[i + n] === pfn + n) n++;
    const offset = i * page;
    const length = Math.min(n * page, spec.size - offset);
    const got = Buffer.from(await memory.readPhys(BigInt(pfn) * BigInt(page), length));
    const want = Buffer.from(
      ahead?.subarray(offset, offset + length) ??
        memfdModel(spec.seed, spec.size, layoutOf(spec), offset, length),
    );
    if (!got.equals(want)) {
      let at = 0;
      while (at < length && got[at] === want[at]) at++;
      return offset + at;
    }
    i += n;
  }
  return undefined;
}
