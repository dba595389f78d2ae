// What the next kernel did with a damaged handover, from what the host saw: the fault the console
// watchdog raised (if the kernel never came up), the new kernel's console lines, and whether the
// handed-over data was used (the memfd session restored, test_kho's folios, the reserve_mem
// region revived). Pure, so the rules are tested on recorded consoles.

/** What the next kernel did with a damaged handover (`kho corrupt`). */
export type CorruptionOutcome = "refused" | "accepted" | "warned" | "oops" | "panic" | "hang";

/**
 * Lines of the new kernel that say it refused something it was handed (7.2's texts: KHO's
 * "setup: handover FDT ... is incompatible/invalid" and "disabling KHO revival", luo's "LUO state
 * is incompatible", "Block contains invalid entry count", "Block set is corrupted", "File count
 * mismatch", "No registered handler", memfd_luo's "Unable to restore folio", memblock's "KHO
 * reserve-mem ... has wrong size", test_kho's "KHO restore failed").
 */
export const REFUSAL =
  /\b(?:KHO|luo|liveupdate|memfd_luo|test_kho|reserve[-_]mem|memblock)\b.*\b(?:fail\w*|invalid|incompatible|corrupt\w*|mismatch|unknown|no registered|unable|wrong|disabling|exceed\w*|refus\w*|too small)\b/i;
export const WARNING = /\bWARNING:|Bad page state/;

export interface SeenAfterKexec {
  /** The watchdog's fault when the new kernel never answered: its kind, lines and sentence. */
  readonly fault?: { readonly kind: string; readonly excerpt: readonly string[]; readonly message: string };
  /** The new kernel's console lines. */
  readonly lines: readonly string[];
  /** Whether the memfd session came back (undefined when the kernel never came up), or its error. */
  readonly memfd?:
    { readonly ok: true; readonly detail?: string } | { readonly ok: false; readonly error: string };
}

export interface Judgement {
  readonly outcome: CorruptionOutcome;
  readonly detail: string;
  readonly evidence: readonly string[];
  /** A panic, oops, hang, or a corrupt value used without a word: the kernel's weakness. */
  readonly weakness: boolean;
}

function faultOutcome(kind: string): CorruptionOutcome {
  if (kind === "panic" || kind === "qemu-exited") return "panic";
  if (kind === "oops" || kind === "bug" || kind === "debug-report") return "oops";
  if (kind === "warning" || kind === "bad-page" || kind === "kho-failure") return "warned";
  return "hang"; // silent, hung, timeout, stall, hung-task
}

/**
 * The rules: a fault decides when the kernel never came up. Otherwise a refusal line means
 * refused (any WARNING with it is evidence too), a WARNING alone means warned, and with neither
 * the data was accepted when anything of it was used, else refused without a word. `noop` is
 * the unchanged handover: the data must simply be used.
 */
export function judge(seen: SeenAfterKexec, noop: boolean): Judgement {
  if (seen.fault) {
    const outcome = faultOutcome(seen.fault.kind);
    return {
      outcome,
      detail: seen.fault.message,
      evidence: seen.fault.excerpt,
      weakness: outcome !== "warned",
    };
  }
  const refusals = seen.lines.filter((l) => REFUSAL.test(l) && !/Kernel command line/.test(l));
  const warnings = seen.lines.filter((l) => WARNING.test(l));
  const testKho = seen.lines.find((l) =>
    /test_kho: KHO restore (?:succeeded|failed)|test_kho: failed/.test(l),
  );
  const revived = seen.lines.find((l) => /Revived memory reservation/.test(l));
  const used = [
    seen.memfd?.ok
      ? `memfd session restored${seen.memfd.detail ? `: ${seen.memfd.detail}` : ""}`
      : `memfd session not restored (${seen.memfd?.error ?? "?"})`,
    testKho ?? "test_kho printed nothing",
    revived ?? "no reserve_mem region revived",
  ];
  const usedAny = seen.memfd?.ok === true || testKho?.includes("succeeded") === true || revived !== undefined;
  const outcome: CorruptionOutcome = refusals.length
    ? "refused"
    : warnings.length
      ? "warned"
      : usedAny
        ? "accepted"
        : "refused";
  const silent =
    outcome === "refused" && !refusals.length ? ["nothing said, nothing used: refused without a word"] : [];
  return {
    outcome,
    detail: used.join("; "),
    evidence: [...refusals, ...warnings, ...silent, ...used],
    weakness: !noop && outcome === "accepted",
  };
}
