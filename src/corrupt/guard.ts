// The only way the corruption matrix writes guest memory: a write must fall wholly inside one
// of the ranges the located handover describes (locate.ts), or it is refused before anything is
// written. A mutation planned from a wrong offset then fails the case as the harness's error
// instead of corrupting some unrelated page of the guest and blaming the kernel.
import { HarnessError } from "../errors.js";
import type { PhysRange } from "./locate.js";

export interface PlannedWrite {
  readonly phys: bigint;
  readonly bytes: Uint8Array;
  /** The field it changes, in words ("root FDT compatible", "LUO block next"). */
  readonly what: string;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** The range `w` lies in; one sentence naming the write and the nearest range when none. */
export function guardWrite(w: PlannedWrite, allowed: readonly PhysRange[]): PhysRange {
  const end = w.phys + BigInt(w.bytes.length);
  const inside = allowed.find((r) => w.phys >= r.start && end <= r.end);
  if (inside && w.bytes.length > 0) return inside;
  const near = [...allowed].sort((a, b) => {
    const d = (r: PhysRange) => (w.phys < r.start ? r.start - w.phys : w.phys >= r.end ? w.phys - r.end : 0n);
    return d(a) < d(b) ? -1 : d(a) > d(b) ? 1 : 0;
  })[0];
  throw new HarnessError(
    w.bytes.length === 0
      ? `refused an empty write at ${hex(w.phys)} (${w.what})`
      : `refused to write ${w.bytes.length} bytes at ${hex(w.phys)} (${w.what}): outside the handover's structures${
          near ? ` (nearest: ${near.what} at ${hex(near.start)}-${hex(near.end)})` : ""
        }`,
  );
}
