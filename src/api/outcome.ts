// How a scenario's steps end early: a failed check, a skip, or an expected failure. Each
// carries its reason and evidence; the runner turns them into verdicts.

export class CheckFailed extends Error {
  override readonly name = "CheckFailed";
  constructor(
    message: string,
    readonly evidence: readonly string[] = [],
  ) {
    super(message);
  }
}

export class Skipped extends Error {
  override readonly name = "Skipped";
}
