// A real machine as a scenario's guest (kho run --target): reached over SSH only, with the
// user's key and pinned host key (resolved by src/target/login.ts), its console read from a
// command of the user's (ipmitool sol, a socat to a serial server) when there is one. What the
// harness runs there comes from its private directory, put first on PATH, and is uploaded again
// after every boot that lost it. There is no QEMU: the host neither reads nor pauses its memory
// (`machine` is absent), and a kexec ends when SSH answers with a new boot id; a machine that
// does not come back by the deadline gets the power-cycle command, and the step fails with it.
import { execa } from "execa";
import { HarnessError } from "../errors.js";
import { GuestConsole } from "../vm/console.js";
import { startConsoleCommand } from "../vm/console-command.js";
import { GuestFault } from "../vm/fault.js";
import { GuestBoots } from "../vm/guest-boots.js";
import type { ExecResult, ExecStream, SshLink, SshLogin, SshTarget } from "../vm/ssh.js";
import { bootTimeline, type BootTiming } from "./boot-timeline.js";
import type { AtHandover } from "./handover-pause.js";
import type { GuestSession, NextKernelFiles, SessionConsole } from "./session.js";

/** Deadlines on a real machine: firmware is not involved in a kexec, but a server's init is slow. */
export const MACHINE_DEADLINES = {
  connectMs: 60_000,
  commandMs: 120_000,
  kexecMs: 300_000,
  powerCycleMs: 120_000,
  /** After the power-cycle command: firmware, the boot loader and the whole boot. */
  backAfterPowerCycleMs: 600_000,
} as const;

/** A file the machine's private directory must hold in every boot. */
export interface MachineFile {
  readonly local: string;
  readonly name: string;
  readonly mode: number;
}

export interface MachineOptions {
  /** `root@host:port`, for messages. */
  readonly target: string;
  readonly ssh: SshTarget & SshLogin;
  /** The private directory on the machine: the only place the harness writes there. */
  readonly workDir: string;
  readonly files: readonly MachineFile[];
  readonly nextKernel: NextKernelFiles;
  /** Where the console's boot-N.log files go. */
  readonly logDir: string;
  readonly consoleCmd?: string;
  readonly powerCycleCmd?: string;
  /** How long a kexec may take before the machine counts as not back (default MACHINE_DEADLINES). */
  readonly kexecDeadlineMs?: number;
}

/** Runs `cmd` with its output feeding `console`; returns how to end it. */
function startConsole(cmd: string, console: GuestConsole): () => Promise<void> {
  const { child, end } = startConsoleCommand(cmd);
  child.stdout.on("data", (d: Buffer) => console.feed(d));
  child.stderr.on("data", () => undefined);
  child.on("error", () => undefined);
  return end;
}

export class MachineSession implements GuestSession {
  readonly kexecLoadsNextKernel = false;
  readonly machine = undefined;
  readonly timings: BootTiming[] = [];
  private readonly consoleLines: GuestConsole;

  private constructor(
    private readonly opts: MachineOptions,
    private readonly boots: GuestBoots,
    private current: SshLink,
    private bootNo: number,
    console: GuestConsole,
    private readonly endConsole: () => Promise<void>,
  ) {
    this.consoleLines = console;
  }

  /** Connects to the machine as it runs now (its boot 1) and puts the private files in place. */
  static async open(opts: MachineOptions): Promise<MachineSession> {
    const console = new GuestConsole({ logDir: opts.logDir });
    const endConsole = opts.consoleCmd ? startConsole(opts.consoleCmd, console) : () => Promise.resolve();
    try {
      const boots = new GuestBoots(opts.ssh);
      const first = await boots.connect(MACHINE_DEADLINES.connectMs);
      const session = new MachineSession(opts, boots, first.link, first.boot, console, endConsole);
      await session.placeFiles();
      return session;
    } catch (err) {
      await endConsole();
      throw err;
    }
  }

  get boot(): number {
    return this.bootNo;
  }
  get logDir(): string {
    return this.opts.logDir;
  }
  get console(): SessionConsole {
    return this.consoleLines;
  }
  get nextKernel(): NextKernelFiles {
    return this.opts.nextKernel;
  }
  get workDir(): string {
    return this.opts.workDir;
  }

  /** Every command finds the harness's files first (the agent), watched by the console. */
  exec(command: string, deadlineMs: number = MACHINE_DEADLINES.commandMs): Promise<ExecResult> {
    return this.consoleLines.watch(
      this.current.exec(`export PATH=${this.opts.workDir}:$PATH; ${command}`, { deadlineMs }),
      { step: command.split(" ")[0] ?? command },
    );
  }

  async run(command: string, deadlineMs?: number): Promise<string> {
    const r = await this.exec(command, deadlineMs);
    if (r.code !== 0)
      throw new HarnessError(
        `command failed on ${this.opts.target} (exit ${r.code ?? r.signal}): ${command}`,
        [...r.stderr.trimEnd().split("\n").slice(-15), ...r.stdout.trimEnd().split("\n").slice(-5)],
      );
    return r.stdout;
  }

  async readFile(path: string): Promise<Buffer> {
    return Buffer.from(await this.run(`base64 ${path}`), "base64");
  }

  upload(source: string | Buffer, remotePath: string, mode = 0o755): Promise<void> {
    return this.consoleLines.watch(this.current.upload(source, remotePath, mode), {
      step: `upload ${remotePath}`,
    });
  }

  stream(command: string): Promise<ExecStream> {
    return this.current.execStream(`export PATH=${this.opts.workDir}:$PATH; ${command}`);
  }

  /** Nothing pauses a real machine at its kexec: the work is never done (memory/access.ts). */
  atNextHandover<T>(): Promise<AtHandover<T>> {
    return Promise.resolve({
      kind: "failed",
      detail: "a machine target cannot be paused at the kexec",
    });
  }

  /** Uploads the files this boot lacks into the private directory (a kexec may have lost them). */
  private async placeFiles(): Promise<void> {
    const dir = this.opts.workDir;
    const r = await this.current.exec(
      `umask 077; mkdir -p ${dir} && for f in ${this.opts.files.map((f) => f.name).join(" ")}; do test -e ${dir}/$f || echo $f; done`,
      { deadlineMs: MACHINE_DEADLINES.commandMs },
    );
    if (r.code !== 0)
      throw new HarnessError(`cannot make the harness's directory ${dir} on ${this.opts.target}`, [
        ...r.stderr.trim().split("\n").slice(-5),
      ]);
    const missing = new Set(r.stdout.split("\n").filter(Boolean));
    for (const f of this.opts.files)
      if (missing.has(f.name)) await this.current.upload(f.local, `${dir}/${f.name}`, f.mode);
  }

  /**
   * `trigger` makes the machine kexec; resolves when SSH answers from a new boot id (the old
   * kernel's sshd may answer for a while: GuestBoots.reconnect looks past it). At the deadline
   * the power-cycle command runs, and the step fails saying so (and how the machine came back).
   */
  async kexec(trigger: () => Promise<void>, step = "kexec", failed?: Promise<never>): Promise<BootTiming> {
    const since = this.consoleLines.mark();
    const started = performance.now();
    await trigger();
    const abort = new AbortController();
    failed?.catch((err: unknown) => abort.abort(err));
    const deadline = this.opts.kexecDeadlineMs ?? MACHINE_DEADLINES.kexecMs;
    const old = this.current;
    let next;
    try {
      next = await this.consoleLines.watch(
        Promise.race([this.boots.reconnect(deadline, undefined, abort.signal), ...(failed ? [failed] : [])]),
        { step },
      );
    } catch (err) {
      if (abort.signal.aborted || err instanceof GuestFault)
        throw abort.signal.aborted ? abort.signal.reason : err;
      throw await this.notBack(err, step, started, deadline);
    } finally {
      void old.close().catch(() => undefined);
    }
    this.current = next.link;
    this.bootNo = next.boot;
    // the blackout ends when SSH answers; putting the files back is the harness's own time
    const ended = performance.now();
    const timing: BootTiming = {
      boot: this.bootNo,
      via: "kexec",
      totalMs: Math.round(ended - started),
      segments: bootTimeline(this.consoleLines.entriesSince(since), started, ended, "kexec").map((s) => ({
        ...s,
        ms: Math.round(s.ms),
      })),
    };
    this.timings.push(timing);
    await this.placeFiles();
    return timing;
  }

  /**
   * The machine did not come back: runs the power-cycle command (so a hung kexec does not leave
   * a lab machine dead), waits for a new boot, and returns the step's failure with all of it.
   */
  private async notBack(err: unknown, step: string, started: number, deadline: number): Promise<GuestFault> {
    const from = this.bootNo;
    const seconds = Math.round((performance.now() - started) / 1000);
    const why = err instanceof Error ? err.message : String(err);
    const evidence = [why, ...this.consoleLines.lastLines(15).map((l) => `console: ${l}`)];
    const cmd = this.opts.powerCycleCmd;
    if (!cmd)
      return new GuestFault({
        kind: "timeout",
        step,
        boot: this.bootNo,
        detail: `${this.opts.target} did not come back on SSH within ${seconds}s of the kexec (deadline ${deadline / 1000}s); no --power-cycle-cmd was given, so the machine is left as it is`,
        excerpt: evidence,
      });
    const t = performance.now();
    const r = await execa("bash", ["-c", cmd], {
      reject: false,
      all: true,
      timeout: MACHINE_DEADLINES.powerCycleMs,
    });
    const ranMs = Math.round(performance.now() - t);
    const ran = `the power-cycle command ran (exit ${r.exitCode ?? r.signal ?? "?"}, ${(ranMs / 1000).toFixed(1)} s)`;
    const back = await this.boots
      .reconnect(MACHINE_DEADLINES.backAfterPowerCycleMs)
      .then(async (b) => {
        this.current = b.link;
        this.bootNo = b.boot;
        await this.placeFiles();
        return `and ${this.opts.target} came back as a new boot (${b.bootId})`;
      })
      .catch(
        (e: unknown) =>
          `but ${this.opts.target} did not come back after it either: ${e instanceof Error ? e.message : String(e)}`,
      );
    return new GuestFault({
      kind: "timeout",
      step,
      boot: from,
      detail: `${this.opts.target} did not come back on SSH within ${seconds}s of the kexec; ${ran} ${back}`,
      excerpt: [
        ...evidence,
        `--power-cycle-cmd ${cmd}`,
        ...(r.all ?? "")
          .trimEnd()
          .split("\n")
          .filter(Boolean)
          .slice(-5)
          .map((l) => `power-cycle: ${l}`),
      ],
    });
  }

  /** Ends the console command and closes the link; the private directory stays for the next. */
  async stop(): Promise<void> {
    await this.current.close().catch(() => undefined);
    await this.endConsole();
    this.consoleLines.end("the run on the machine ended");
  }
}
