// The fallback for a subtree no registered decoder claims: its first bytes, for display.

import { hexBytes } from "../blob.js";
import type { SubtreeDecoder } from "./decoder.js";

export interface UnknownBlob {
  readonly kind: "unknown";
  /** The first bytes of the blob, for display. */
  readonly head: Uint8Array;
}

export const unknownSubtree: SubtreeDecoder<UnknownBlob> = {
  names: [],
  kind: "unknown",
  decode: ({ bytes }) => ({ kind: "unknown", head: bytes.slice(0, 64) }),
  format: (blob) => [`unknown blob, first bytes ${hexBytes(blob.head)}`],
  toJson: (blob) => ({ kind: blob.kind, head: hexBytes(blob.head) }),
};
