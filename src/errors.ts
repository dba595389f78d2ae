// Errors a user sees: one clear sentence, plus the evidence (log lines) that shows why.
// The CLI prints these without a stack trace; anything else is a bug in the harness.

export class HarnessError extends Error {
  override readonly name: string = "HarnessError";
  constructor(
    message: string,
    /** Log lines or other evidence printed under the sentence. */
    readonly evidence: readonly string[] = [],
    /** Process exit code for the CLI (kselftest: 1 fail, 4 skip). */
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** A binary input that does not decode: names the byte offset and what was wrong there. */
export class DecodeError extends Error {
  override readonly name: string = "DecodeError";
  constructor(
    /** Which format was being decoded ("fdt", "elf", "bzImage", ...). */
    readonly format: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${format}: ${reason} at offset 0x${offset.toString(16)}`);
  }
}
