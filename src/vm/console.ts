// The guest's serial console for its whole life: assembles lines from QEMU's output, splits
// them per boot into boot-N.log, lets callers wait for a line, and runs the watchdog that fails
// the current step with a GuestFault (kernel fault, silence, deadline, QEMU gone) and an excerpt.
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import { classifyLine, GuestFault, type GuestFaultKind, type LineFaultKind } from "./fault.js";
import { scaled } from "../util/deadline.js";

export interface ConsoleLine {
  /** Position in the whole console stream, from 0; `mark()` returns the next one. */
  readonly seq: number;
  /** 1 for the first kernel, +1 at every kernel banner or kexec. */
  readonly boot: number;
  readonly text: string;
  /** Host time (performance.now()) when the line was complete: where a boot spent its time. */
  readonly at: number;
}

export interface ConsoleOptions {
  /** Where boot-1.log, boot-2.log... go; none are written without it. */
  readonly logDir?: string;
  /** Lines shown before and after a fault line in its excerpt. */
  readonly contextBefore?: number;
  readonly contextAfter?: number;
  /** How long to wait for the lines after a fault (its trace) before failing the step. */
  readonly settleMs?: number;
  /** Lines kept in memory for excerpts and `waitFor`; the log files keep everything. */
  readonly historyLines?: number;
}

/** One step of a test, watched by the console. Every time is a duration in ms. */
export interface StepOptions {
  /** Named in the fault message ("during kexec"). */
  readonly step?: string;
  /** Fault lines matching one of these are expected in this step (e.g. a test of a WARNING). */
  readonly expect?: readonly RegExp[];
  /** Fail as `silent` when the console prints nothing for this long. */
  readonly silenceMs?: number;
  /** Fail as `timeout` when the step is not done by then. */
  readonly deadlineMs?: number;
}

export interface WaitOptions extends StepOptions {
  readonly deadlineMs: number;
  /** Search from this `mark()`; by default from the start of the current boot. */
  readonly since?: number;
  /** Ends the wait early, rejecting with the signal's reason (e.g. the trigger failed). */
  readonly signal?: AbortSignal;
}

export interface ConsoleMatch {
  readonly line: ConsoleLine;
  readonly match: RegExpExecArray;
}

/** A kernel fault line being completed with the lines that follow it (its trace). */
interface PendingFault {
  readonly kind: LineFaultKind;
  readonly line: ConsoleLine;
  excerpt?: string[];
  readonly waiters: ((excerpt: string[]) => void)[];
  timer?: NodeJS.Timeout;
}

interface Step {
  readonly opts: StepOptions;
  armed: boolean;
  onLine?: (line: ConsoleLine) => void;
  activity(): void;
  fail(kind: GuestFaultKind, detail: string, excerpt: readonly string[], boot?: number): void;
}

// The kernel's first line: at the start of a line, or right after its printk timestamp (firmware
// may leave escape codes and text before it on the same line, as SeaBIOS does). Not matching
// `Linux version` anywhere keeps a `cat /proc/version` on the console from starting a "boot".
const BANNER = /(?:^|\[\s*\d+\.\d+\]\s*)(?:\[[^\]]*\]\s*)*Linux version \d/;
const KEXEC = /kexec_core: Starting new kernel/;
const TAIL_LINES = 20;
const MAX_UNCLAIMED = 16;
const MAX_LINE = 64 * 1024;

export class GuestConsole {
  private readonly history: ConsoleLine[] = [];
  private readonly decoder = new StringDecoder("utf8");
  private readonly steps = new Set<Step>();
  private readonly unclaimed: PendingFault[] = [];
  private readonly inflight = new Set<PendingFault>();
  private readonly allowed = new Set<RegExp>();
  private readonly listeners = new Set<(line: ConsoleLine) => void>();
  private readonly stepTimers = new Map<Step, () => void>();
  private partial = "";
  private nextSeq = 0;
  private bootNo = 1;
  private bootStart = 0;
  private bannerSeen = false;
  private kexecPending = false;
  private endReason: string | undefined;
  private readonly before: number;
  private readonly after: number;
  private readonly settleMs: number;
  private readonly keep: number;

  constructor(private readonly opts: ConsoleOptions = {}) {
    this.before = opts.contextBefore ?? 10;
    this.after = opts.contextAfter ?? 20;
    this.settleMs = opts.settleMs ?? 500;
    this.keep = opts.historyLines ?? 10_000;
    if (opts.logDir) mkdirSync(opts.logDir, { recursive: true });
  }

  /** The boot the console is in now (1-based). */
  get boot(): number {
    return this.bootNo;
  }

  /** The seq the next line will get: pass it as `since` to wait only for what comes next. */
  mark(): number {
    return this.nextSeq;
  }

  /** The log file of a boot, when a log directory was given. */
  bootLog(boot = this.bootNo): string | undefined {
    return this.opts.logDir ? join(this.opts.logDir, `boot-${boot}.log`) : undefined;
  }

  /** The last `n` lines, the unfinished one included (what a hung guest printed last). */
  lastLines(n = TAIL_LINES): string[] {
    const lines = this.history.slice(-n).map((l) => l.text);
    if (this.partial) lines.push(this.partial);
    return lines.slice(-n);
  }

  /** Lines printed since `mark()` returned `seq` (as far as the history still holds them). */
  linesSince(seq: number): string[] {
    return this.entriesSince(seq).map((l) => l.text);
  }

  /** The same, as lines with their boot and host time. */
  entriesSince(seq: number): ConsoleLine[] {
    return this.history.filter((l) => l.seq >= seq);
  }

  onLine(listener: (line: ConsoleLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Marks fault lines as expected until the returned function is called (spans several steps). */
  allow(patterns: readonly RegExp[]): () => void {
    for (const p of patterns) this.allowed.add(p);
    return () => patterns.forEach((p) => this.allowed.delete(p));
  }

  /** QEMU's serial output, in chunks as they come. */
  feed(chunk: Buffer | string): void {
    if (this.endReason !== undefined) return;
    const text = this.partial + (typeof chunk === "string" ? chunk : this.decoder.write(chunk));
    const parts = text.split("\n");
    this.partial = parts.pop() ?? "";
    // A guest spewing without newlines must not grow one line without bound.
    if (this.partial.length > MAX_LINE) {
      parts.push(this.partial.slice(0, MAX_LINE));
      this.partial = this.partial.slice(MAX_LINE);
    }
    const writes = new Map<number, string>();
    for (const raw of parts) {
      const line = this.append(raw.replace(/\r+$/, ""));
      writes.set(line.boot, (writes.get(line.boot) ?? "") + line.text + "\n");
    }
    this.writeLogs(writes);
    for (const step of this.steps) step.activity();
    if (this.partial) {
      // Prompts ("login: ") come without a newline: let waiters see them.
      const line: ConsoleLine = {
        seq: this.nextSeq,
        boot: this.bootNo,
        text: this.partial.replace(/\r+$/, ""),
        at: performance.now(),
      };
      for (const step of [...this.steps]) if (!step.armed) step.onLine?.(line);
    }
  }

  /** The stream ended (QEMU exited): every waiting step fails now, with its fault if it saw one. */
  end(reason: string): void {
    if (this.endReason !== undefined) return;
    const rest = (this.partial + this.decoder.end()).replace(/\r+$/, "");
    this.partial = "";
    if (rest) {
      const line = this.append(rest);
      this.writeLogs(new Map([[line.boot, `${line.text}\n`]]));
    }
    this.endReason = reason;
    for (const pf of [...this.inflight]) this.finalize(pf);
    for (const step of [...this.steps]) {
      if (!step.armed) step.fail("qemu-exited", reason, this.lastLines());
    }
  }

  /**
   * Runs `work` as a step: it rejects with a GuestFault as soon as the watchdog fires, and the
   * AbortSignal handed to `work` is aborted then, so it can stop (e.g. an SSH command).
   */
  watch<T>(work: Promise<T> | ((signal: AbortSignal) => Promise<T>), opts: StepOptions = {}): Promise<T> {
    const abort = new AbortController();
    return new Promise<T>((resolve, reject) => {
      const step = this.open(opts, (fault) => {
        abort.abort(fault);
        reject(fault);
      });
      // A step that saw a fault stays failed even if the work finishes while the trace comes in.
      const settle = (fn: () => void) => {
        if (step.armed) return;
        this.close(step);
        fn();
      };
      if (!this.steps.has(step) && typeof work === "function") return; // failed already: do not start it
      const promise = typeof work === "function" ? work(abort.signal) : work;
      promise.then(
        (value) => settle(() => resolve(value)),
        (err: unknown) => settle(() => reject(err instanceof Error ? err : new Error(String(err)))),
      );
    });
  }

  /** Waits for a console line matching `re` (a partial line counts), as a watched step. */
  waitFor(re: RegExp, opts: WaitOptions): Promise<ConsoleMatch> {
    const pattern = new RegExp(re.source, re.flags.replace(/[gy]/g, ""));
    const since = opts.since ?? this.bootStart;
    return new Promise<ConsoleMatch>((resolve, reject) => {
      const step = this.open({ ...opts, step: opts.step ?? `wait for ${String(re)}` }, reject);
      const check = (line: ConsoleLine): boolean => {
        const match = pattern.exec(line.text);
        if (!match || step.armed) return false;
        this.close(step);
        resolve({ line, match });
        return true;
      };
      if (step.armed || !this.steps.has(step)) return;
      if (this.history.some((l) => l.seq >= since && check(l))) return;
      step.onLine = check;
      const signal = opts.signal;
      if (!signal) return;
      const cancel = () => {
        if (!this.steps.has(step) || step.armed) return;
        this.close(step);
        reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
      };
      if (signal.aborted) cancel();
      else signal.addEventListener("abort", cancel, { once: true });
    });
  }

  private append(text: string): ConsoleLine {
    if (this.kexecPending || (BANNER.test(text) && this.bannerSeen)) {
      this.bootNo += 1;
      this.bootStart = this.nextSeq;
      this.bannerSeen = false;
      this.kexecPending = false;
    }
    if (BANNER.test(text)) this.bannerSeen = true;
    if (KEXEC.test(text)) this.kexecPending = true;
    const line: ConsoleLine = { seq: this.nextSeq++, boot: this.bootNo, text, at: performance.now() };
    this.history.push(line);
    if (this.history.length > this.keep) this.history.splice(0, this.history.length - this.keep);
    for (const l of this.listeners) l(line);
    this.watchdog(line);
    for (const step of [...this.steps]) if (!step.armed) step.onLine?.(line);
    for (const pf of this.inflight) if (line.seq >= pf.line.seq + this.after) this.finalize(pf);
    return line;
  }

  private watchdog(line: ConsoleLine): void {
    const kind = classifyLine(line.text);
    if (!kind || [...this.allowed].some((re) => re.test(line.text))) return;
    const pf: PendingFault = { kind, line, waiters: [] };
    this.inflight.add(pf);
    pf.timer = setTimeout(() => this.finalize(pf), this.settleMs);
    const targets = [...this.steps].filter((s) => !expects(s.opts, line.text));
    if (this.steps.size === 0 && this.unclaimed.length < MAX_UNCLAIMED) this.unclaimed.push(pf);
    for (const step of targets) this.arm(step, pf);
  }

  private arm(step: Step, pf: PendingFault): void {
    if (step.armed) return;
    step.armed = true;
    this.stepTimers.get(step)?.(); // the fault, not silence or the deadline, is what gets reported
    const fire = (excerpt: string[]) =>
      step.fail(pf.kind, pf.line.text.replace(/^(?:\[[^\]]*\]\s*)+/, ""), excerpt, pf.line.boot);
    if (pf.excerpt) fire(pf.excerpt);
    else pf.waiters.push(fire);
  }

  private finalize(pf: PendingFault): void {
    if (pf.excerpt) return;
    clearTimeout(pf.timer);
    this.inflight.delete(pf);
    const from = pf.line.seq - this.before;
    const to = pf.line.seq + this.after;
    pf.excerpt = this.history.filter((l) => l.seq >= from && l.seq <= to).map((l) => l.text);
    for (const w of pf.waiters.splice(0)) w(pf.excerpt);
  }

  private open(given: StepOptions, reject: (fault: GuestFault) => void): Step {
    // the deadlines as the timeout factor scales them (src/util/deadline.ts)
    const opts: StepOptions = {
      ...given,
      ...(given.silenceMs !== undefined ? { silenceMs: scaled(given.silenceMs) } : {}),
      ...(given.deadlineMs !== undefined ? { deadlineMs: scaled(given.deadlineMs) } : {}),
    };
    let silence: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    const step: Step = {
      opts,
      armed: false,
      activity: () => {
        if (opts.silenceMs === undefined || step.armed) return;
        clearTimeout(silence);
        silence = setTimeout(
          () =>
            step.fail("silent", `no console output for ${seconds(opts.silenceMs ?? 0)}`, this.lastLines()),
          opts.silenceMs,
        );
      },
      fail: (kind, detail, excerpt, boot = this.bootNo) => {
        if (!this.steps.has(step)) return;
        this.close(step);
        reject(new GuestFault({ kind, detail, excerpt, boot, ...(opts.step ? { step: opts.step } : {}) }));
      },
    };
    const stopTimers = () => {
      clearTimeout(silence);
      clearTimeout(deadline);
    };
    this.stepTimers.set(step, stopTimers);
    this.steps.add(step);
    // A fault seen while no step was running fails the next step, unless that step expects it.
    for (const pf of this.unclaimed.splice(0)) if (!expects(opts, pf.line.text)) this.arm(step, pf);
    if (step.armed) return step;
    if (this.endReason !== undefined) {
      step.fail("qemu-exited", this.endReason, this.lastLines());
      return step;
    }
    step.activity();
    if (opts.deadlineMs !== undefined) {
      deadline = setTimeout(
        () => step.fail("timeout", `not done within ${seconds(opts.deadlineMs ?? 0)}`, this.lastLines()),
        opts.deadlineMs,
      );
    }
    return step;
  }

  private close(step: Step): void {
    this.steps.delete(step);
    this.stepTimers.get(step)?.();
    this.stepTimers.delete(step);
  }

  /**
   * The first failed write of the per-boot logs (a full disk): they stop there, and whoever runs
   * the guest reports it (QEMU writes console.log itself). Thrown from QEMU's output handler it
   * would have been an uncaught exception.
   */
  logError: Error | undefined;

  private writeLogs(writes: Map<number, string>): void {
    if (!this.opts.logDir || this.logError) return;
    try {
      for (const [boot, text] of writes) appendFileSync(join(this.opts.logDir, `boot-${boot}.log`), text);
    } catch (e) {
      this.logError = e instanceof Error ? e : new Error(String(e));
    }
  }
}

function expects(opts: StepOptions, text: string): boolean {
  return opts.expect?.some((re) => re.test(text)) ?? false;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)}s`;
}
