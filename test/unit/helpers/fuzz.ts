import fc from "fast-check";
import { DecodeError } from "../../../src/errors.js";

/**
 * Cuts `blob` at a random length and overwrites up to `maxEdits` random bytes, `runs` times:
 * `decode` must return or throw a DecodeError, never anything else (the binary parsers' rule).
 */
export function fuzzDecodeErrorsOnly(
  blob: Uint8Array,
  decode: (bytes: Uint8Array) => unknown,
  runs: number,
  maxEdits = 8,
): void {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat({ max: blob.length - 1 }), fc.integer({ min: 0, max: 255 })), {
        maxLength: maxEdits,
      }),
      fc.nat({ max: blob.length }),
      (edits, length) => {
        const b = blob.slice(0, length);
        for (const [at, v] of edits) if (at < b.length) b[at] = v;
        try {
          decode(b);
        } catch (err) {
          if (!(err instanceof DecodeError)) throw err;
        }
      },
    ),
    { numRuns: runs },
  );
}
