// What can go wrong with a guest, as one typed error: the console watchdog (console.ts) raises
// it for kernel faults, silence, deadlines and QEMU exits, always with the console lines that show why.
import { HarnessError } from "../errors.js";

/** Faults recognised in a console line. */
export type LineFaultKind =
  | "panic"
  | "oops"
  | "bug"
  | "warning"
  | "bad-page"
  | "kho-failure"
  | "hung-task"
  | "stall"
  /** A report of the debug kernel's detectors: KASAN, KFENCE, lockdep, UBSAN, ODEBUG, DEBUG_LIST. */
  | "debug-report";

export type GuestFaultKind =
  | LineFaultKind
  /** No console output for the step's silence limit: the guest looks hung. */
  | "silent"
  /** SSH stopped answering (keepalives unanswered) while QEMU lives and the console is quiet. */
  | "hung"
  /** The step's deadline passed while the guest was still printing. */
  | "timeout"
  /** QEMU ended while a step was waiting on the guest. */
  | "qemu-exited";

/**
 * Order matters: the first match names the kind. "BUG: Bad page state" is a bad page, not a
 * generic BUG, a soft lockup ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s!") is a stall,
 * and arm64's "Kernel panic - not syncing: Oops - BUG: Fatal exception" is a panic. A stalled
 * CPU keeps the console busy with its reports, so without this the step waits out its deadline.
 */
export const FAULT_PATTERNS: readonly { readonly kind: LineFaultKind; readonly re: RegExp }[] = [
  { kind: "panic", re: /Kernel panic - not syncing/ },
  { kind: "bad-page", re: /Bad page state/ },
  { kind: "hung-task", re: /blocked for more than \d+ seconds/ },
  {
    kind: "stall",
    re: /\brcu: INFO: \S+ (?:self-)?detected (?:expedited )?stalls?\b|\bsoft lockup - CPU#|\bhard LOCKUP\b/,
  },
  {
    kind: "debug-report",
    re: /\bBUG: KASAN: |\bBUG: KFENCE: |\bUBSAN: |\bODEBUG: |WARNING: possible (?:circular locking dependency|recursive locking) detected|WARNING: inconsistent lock state|WARNING: suspicious RCU usage|BUG: sleeping function called from invalid context|\blist_(?:add|del) corruption/,
  },
  { kind: "oops", re: /\bOops\b/ },
  { kind: "bug", re: /\bBUG:|kernel BUG at/ },
  { kind: "warning", re: /\bWARNING:/ },
  // KHO and LUO report failures in free text ("KHO: failed to ...", "test_kho: KHO restore failed").
  { kind: "kho-failure", re: /(?:kho|luo|liveupdate).*fail/i },
];

/** Lines that merely echo user input (the command line may contain "fail" or "kho"). */
const ECHO_LINES = /Kernel command line:|Unknown kernel command line parameters/;

export function classifyLine(line: string): LineFaultKind | undefined {
  if (ECHO_LINES.test(line)) return undefined;
  return FAULT_PATTERNS.find((p) => p.re.test(line))?.kind;
}

const SENTENCES: Record<GuestFaultKind, string> = {
  panic: "the guest kernel panicked",
  oops: "the guest kernel oopsed",
  bug: "the guest kernel hit a BUG",
  warning: "the guest kernel printed a WARNING",
  "bad-page": "the guest kernel reported a bad page state",
  "kho-failure": "KHO/LUO reported a failure",
  "hung-task": "the guest kernel reported a hung task",
  stall: "the guest kernel reported a stalled CPU",
  "debug-report": "the guest kernel's bug detectors reported a bug",
  silent: "the guest looks hung: its console went silent",
  hung: "the guest hung: SSH stopped answering",
  timeout: "the guest did not get there in time",
  "qemu-exited": "QEMU exited",
};

export interface GuestFaultInit {
  readonly kind: GuestFaultKind;
  /** The console lines that show the fault (the matching line with context, or the last lines). */
  readonly excerpt: readonly string[];
  /** Which boot of the guest (1 = first kernel, 2 = after the first kexec...). */
  readonly boot: number;
  /** The step that was running, e.g. "boot" or "kexec". */
  readonly step?: string;
  /** The console line that matched, or a short detail ("no output for 30s"). */
  readonly detail: string;
}

export class GuestFault extends HarnessError {
  override readonly name = "GuestFault";
  readonly kind: GuestFaultKind;
  readonly excerpt: readonly string[];
  readonly boot: number;
  readonly step: string | undefined;
  readonly detail: string;

  constructor(init: GuestFaultInit) {
    const where = `${init.step ? `during ${init.step}, ` : ""}boot ${init.boot}`;
    super(`${SENTENCES[init.kind]} (${where}): ${init.detail}`, init.excerpt);
    this.kind = init.kind;
    this.excerpt = init.excerpt;
    this.boot = init.boot;
    this.step = init.step;
    this.detail = init.detail;
  }
}
