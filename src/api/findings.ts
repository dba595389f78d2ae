// What checks say. A check is a pure function from what was seen (the agent's reports, the
// decoded handover) to findings; the scenario hands them to `ctx.expect`, which records each
// one and fails the scenario on the first that is not ok. A check the scenario planned but could
// not do is recorded as not done, with a typed reason, and fails the scenario unless the
// scenario declares that reason acceptable (Scenario.acceptNotDone).

/** One thing a check looked at, and whether it was right. */
export interface Finding {
  /** Stable id of the check, e.g. "memfd.contents" (reports and tests key on it). */
  readonly check: string;
  readonly ok: boolean;
  /** What is wrong (or, when ok, what was confirmed), one sentence. */
  readonly message: string;
  readonly evidence?: readonly string[];
}

/** Why a planned check was not done. */
export type NotDoneReason =
  /** The host's read at the kexec pause failed or gave nothing. */
  | "handover-read-failed"
  /** The guest was paused only after the new kernel printed its banner: what was read is not the handover. */
  | "handover-pause-late"
  /** The kexec never reached the handover while work was waiting for it (the kernel's doing). */
  | "handover-missed"
  /** Nothing was read at the kexec: the old kernel's memory came from a full dump, or its out/fdt
   *  gave no root FDT address. */
  | "handover-not-read"
  /** A machine target (kho run --target): the host cannot read or pause its memory there. It is
   *  listed in the report as not possible on this target and never counted as passed. */
  | "not-on-target";

/** Not-done reasons that are the kernel's doing (a `fail`); the others are the harness's (`error`). */
export const KERNEL_NOT_DONE: readonly NotDoneReason[] = ["handover-missed"];

/** How each planned check ended, in every report format. */
export interface CheckRecord {
  readonly check: string;
  readonly status: "passed" | "failed" | "not-done";
  /** For failed: the finding's message; for not-done: what happened. */
  readonly detail?: string;
  readonly notDone?: NotDoneReason;
  /** A not-done check whose reason the scenario declares acceptable (it does not fail it). */
  readonly accepted?: boolean;
}

export const ok = (check: string, message: string): Finding => ({ check, ok: true, message });

export const bad = (check: string, message: string, evidence: readonly string[] = []): Finding => ({
  check,
  ok: false,
  message,
  evidence,
});

/** A finding that holds when `condition` does. */
export const expectThat = (
  check: string,
  condition: boolean,
  message: string,
  evidence: readonly string[] = [],
): Finding => (condition ? ok(check, message) : bad(check, message, evidence));
