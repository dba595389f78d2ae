// One guest under test: QEMU booted on the harness's kernel and initramfs, the SSH link to
// whichever kernel runs now, and the kexec step as a state machine: trigger, lose the link,
// see the new kernel's ready line on the console, reconnect to the new boot.
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { archSpec, type ArchName } from "../arch.js";
import type { SymbolTable } from "../kernel/symbols.js";
import { HarnessError } from "../errors.js";
import type { Logger } from "../util/log.js";
import { GuestFault } from "../vm/fault.js";
import type { ConsoleLine, ConsoleMatch } from "../vm/console.js";
import type { SshKeys } from "../vm/keys.js";
import { DEFAULT_MEMORY_MIB, describeExit, kvmErrors, launchVm, type Accel, type Vm } from "../vm/qemu.js";
import { GuestBoots } from "../vm/guest-boots.js";
import {
  KEEPALIVE_SILENCE_MS,
  KEEPALIVE_TIMEOUT,
  SshFailure,
  type ExecResult,
  type ExecStream,
  type SshLink,
} from "../vm/ssh.js";
import { bootTimeline, type BootTiming } from "./boot-timeline.js";
import { HandoverPause, type AtHandover, type HandoverWork, type KexecBreakpoint } from "./handover-pause.js";
import { kexecHangEvidence, runtimeText } from "./hang-evidence.js";
import { GUEST_WORK_DIR, NEXT_KERNEL } from "./kexec.js";
import type { GuestBoot, GuestMachine, GuestSession, SessionConsole } from "./session.js";

/** Deadlines under TCG, generous enough for a loaded 2-core host. */
export const DEADLINES = {
  bootMs: 180_000,
  silenceMs: 90_000,
  sshMs: 60_000,
  commandMs: 120_000,
  kexecMs: 180_000,
} as const;

const READY = /KHO-GUEST: ready boot_id=(\S+)/;

/**
 * The boot id the init printed with its ready line (a printk record, so whole). Once a boot's
 * ready line is out, the kernel that printed it is the one sshd runs on: no need to ask again.
 */
function bootIdOf(ready: ConsoleMatch): string | undefined {
  return ready.match[1];
}

export interface GuestOptions {
  readonly arch: ArchName;
  readonly kernel: string;
  readonly initrd: string;
  /** Disk with next-kernel (see overlay.ts). */
  readonly nextDisk: string;
  readonly boot: GuestBoot;
  readonly accel: Accel;
  readonly keys: SshKeys;
  readonly logDir: string;
  readonly name: string;
  readonly log: Logger;
  /** The System.map of the kernel every boot runs, to name where a hung guest's vCPUs are. */
  readonly symbols?: () => Promise<SymbolTable | undefined>;
}

/** The old kernel's last function before the jump (kernel_kexec: after LUO's serialization,
 *  the "Starting new kernel" line and machine_shutdown). */
const KEXEC_SYMBOL = "machine_kexec";
/** `console` makes the handover pause wait for the console line instead of a breakpoint. */
export const PAUSE_ENV = "KHO_KEXEC_PAUSE";

/** A guest of its own: one QEMU, one scenario (or a shared guest's members, through shared.ts). */
export class Guest implements GuestSession {
  readonly kexecLoadsNextKernel = false;
  readonly nextKernel = NEXT_KERNEL;
  readonly workDir = GUEST_WORK_DIR;
  /** Where each boot's time went, in boot order. */
  readonly timings: BootTiming[] = [];
  private readonly handover = new HandoverPause();

  private constructor(
    readonly vm: Vm,
    private readonly boots: GuestBoots,
    private current: SshLink,
    private bootNo: number,
    private readonly symbols: GuestOptions["symbols"],
  ) {}

  /** Boots the guest and connects to it; the console watchdog guards the whole boot. */
  static async start(opts: GuestOptions): Promise<Guest> {
    const launched = performance.now();
    const vm = await launchVm({
      arch: opts.arch,
      name: opts.name,
      accel: opts.accel,
      memoryMiB: opts.boot.memoryMiB ?? DEFAULT_MEMORY_MIB,
      smp: 2,
      ...(opts.boot.numaNodes ? { numaNodes: opts.boot.numaNodes } : {}),
      ssh: true,
      logDir: opts.logDir,
      boot: {
        kind: "kernel",
        kernel: opts.kernel,
        initrd: opts.initrd,
        kho: opts.boot.kho,
        ...(opts.boot.earlyConsole ? { earlyConsole: true } : {}),
        // The kernel keeps its initrd at /sys/firmware/initrd: the next kernel's (kexec.ts).
        append: ["retain_initrd", opts.boot.append ?? ""].join(" ").trim(),
      },
      extraArgs: [
        "-drive",
        `file=${opts.nextDisk},format=raw,if=none,id=next,readonly=on`,
        "-device",
        "virtio-blk-pci,drive=next,serial=kho-next",
      ],
    });
    try {
      const ready = await vm.console.waitFor(READY, {
        deadlineMs: DEADLINES.bootMs,
        silenceMs: DEADLINES.silenceMs,
        step: "boot",
      });
      const port = vm.sshPort;
      if (port === undefined) throw new HarnessError("QEMU reported no SSH port forward");
      const boots = new GuestBoots({
        host: "127.0.0.1",
        port,
        privateKey: opts.keys.client.private,
        hostKey: opts.keys.host.public,
      });
      const first = await vm.console.watch(boots.connect(DEADLINES.sshMs, bootIdOf(ready)), { step: "ssh" });
      const guest = new Guest(vm, boots, first.link, first.boot, opts.symbols);
      guest.timed("boot", vm.console.entriesSince(0), launched);
      return guest;
    } catch (err) {
      const tail = vm.console.lastLines(15);
      const underKvm =
        opts.accel === "kvm" && err instanceof GuestFault && /^(silent|timeout)$/.test(err.kind);
      const kvmState = underKvm ? await describeKvmStall(vm) : undefined;
      await vm.stop(1_000);
      // A guest stuck under KVM is most often KVM not working on this host (see `kho doctor`).
      if (err instanceof GuestFault && kvmState) {
        throw new GuestFault({
          kind: err.kind,
          boot: err.boot,
          ...(err.step ? { step: err.step } : {}),
          detail: `${err.detail} under KVM (${kvmState.state})`,
          excerpt: [
            ...err.excerpt,
            ...kvmState.errors,
            "KVM may not work on this host: `kho doctor` probes it; KHO_ACCEL=tcg forces TCG",
          ],
        });
      }
      // The guest printed its ready line, so the kernel and init run: say it is SSH that failed,
      // and show what the console says (init's lines about dropbear) next to SSH's own evidence.
      if (err instanceof SshFailure) {
        throw new SshFailure(err.kind, `the guest booted but SSH never came up: ${err.message}`, [
          ...err.evidence,
          "console (last lines):",
          ...tail,
        ]);
      }
      throw err;
    }
  }

  /** 1 for the first kernel, 2 after one kexec... */
  get boot(): number {
    return this.bootNo;
  }

  get logDir(): string {
    return this.vm.logDir;
  }

  get console(): SessionConsole {
    return this.vm.console;
  }

  get machine(): GuestMachine {
    return this.vm;
  }

  /** Runs a shell command in the guest, watched by the console (a panic fails it at once). */
  exec(command: string, deadlineMs: number = DEADLINES.commandMs): Promise<ExecResult> {
    return this.watched(this.current.exec(command, { deadlineMs }), command.split(" ")[0] ?? command);
  }

  /** Runs a command that must succeed; returns its stdout. */
  async run(command: string, deadlineMs?: number): Promise<string> {
    const r = await this.exec(command, deadlineMs);
    if (r.code !== 0) {
      throw new HarnessError(`guest command failed (exit ${r.code ?? r.signal}): ${command}`, [
        ...r.stderr.trimEnd().split("\n").slice(-15),
        ...r.stdout.trimEnd().split("\n").slice(-5),
      ]);
    }
    return r.stdout;
  }

  /** Reads a guest file as bytes (through base64, since exec output is text). */
  async readFile(path: string): Promise<Buffer> {
    return Buffer.from(await this.run(`base64 ${path}`), "base64");
  }

  /** Copies a host file (or bytes) into the guest. */
  upload(source: string | Buffer, remotePath: string, mode = 0o755): Promise<void> {
    return this.watched(this.current.upload(source, remotePath, mode), `upload ${remotePath}`);
  }

  /**
   * An SSH step under the console watchdog. A kernel fault or QEMU's exit fails it at once;
   * a guest that stops answering SSH (its keepalives go unanswered within ~20 s) while QEMU
   * lives and the console stays quiet is reported as hung, with its last console lines.
   */
  private async watched<T>(work: Promise<T>, step: string): Promise<T> {
    const mark = this.vm.console.mark();
    const started = performance.now();
    try {
      return await this.vm.console.watch(work, { step });
    } catch (err) {
      throw await this.explainLoss(err, step, mark, started);
    }
  }

  private async explainLoss(err: unknown, step: string, mark: number, started: number): Promise<unknown> {
    if (!(err instanceof SshFailure) || err.kind !== "lost") return err;
    const droppedAt = performance.now();
    // A dying guest closes SSH a moment before QEMU exits: let the exit (and its fault) land.
    await Promise.race([this.vm.exited, sleep(1_000)]);
    // Console lines count when they came while SSH was silent: for unanswered keepalives, since
    // the guest last answered (a boot's late lines, such as the TSC's refined calibration a
    // second after boot, may fall between the command's start and the hang).
    const silentSince = this.current.closedReason?.includes(KEEPALIVE_TIMEOUT)
      ? droppedAt - KEEPALIVE_SILENCE_MS
      : started;
    const printed = this.vm.console.entriesSince(mark).filter((l) => l.at >= silentSince);
    const exit = this.vm.exit;
    // QEMU killed from outside (by a signal, not the guest's own reboot): that is what happened.
    if (exit?.signal)
      return new GuestFault({
        kind: "qemu-exited",
        step,
        boot: this.vm.console.boot,
        detail: describeExit(exit),
        excerpt: [...err.evidence, ...this.vm.console.lastLines()],
      });
    if (exit) return err;
    const status = await this.vm.qmp.queryStatus().catch(() => undefined);
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    const command = /while running: (.*)$/s.exec(err.message)?.[1] ?? step;
    const why = this.current.closedReason ?? "connection lost";
    // The guest's side closed the link (no unanswered keepalives) and the guest still runs: its
    // sshd went away, not the guest (whatever the console printed meanwhile).
    if (!why.includes(KEEPALIVE_TIMEOUT) && status?.status === "running")
      return new SshFailure(
        "lost",
        `${err.message} (the guest closed the connection ${seconds}s in: ${why}; QEMU alive, guest state running)`,
        [...err.evidence, ...this.vm.console.lastLines()],
      );
    if (printed.length > 0) return err;
    return new GuestFault({
      kind: "hung",
      step,
      boot: this.vm.console.boot,
      detail: `the link dropped ${seconds}s into "${command}" (${why}) and the console printed nothing since; QEMU is alive (${status ? `guest state ${status.status}` : "its QMP does not answer"})`,
      excerpt: [...err.evidence, ...this.vm.console.lastLines()],
    });
  }

  stream(command: string): Promise<ExecStream> {
    return this.current.execStream(command);
  }

  /** Runs `work` at the next kexec's handover, with the guest paused (see HandoverPause). */
  atNextHandover<T>(key: string, work: HandoverWork<T>): Promise<AtHandover<T>> {
    return this.handover.add(key, work);
  }

  /**
   * Where the handover pause stops the guest: `machine_kexec` of the running kernel (its
   * System.map address moved by the KASLR offset the ready line gives), or why not.
   */
  private async kexecBreakpoint(): Promise<KexecBreakpoint | string> {
    if (process.env[PAUSE_ENV] === "console") return `${PAUSE_ENV}=console`;
    // the symbols are the booted kernel's; a later boot may run another image (a variant)
    if (this.bootNo !== 1) return "only the first boot's kernel has a known System.map";
    const table = await this.symbols?.().catch(() => undefined);
    if (!table) return "no System.map for the booted kernel";
    const text = runtimeText(
      this.vm.console.entriesSince(0).map((l) => l.text),
      table,
    );
    if (text === undefined) return "the init's ready line gave no text= or stext= address";
    const i = table.names.indexOf(KEXEC_SYMBOL);
    const linked = table.addrs[i];
    if (linked === undefined) return `${KEXEC_SYMBOL} is not in System.map`;
    return {
      symbol: KEXEC_SYMBOL,
      addr: linked - table.text + text,
      kind: archSpec(this.vm.arch).gdbBreakpointKind,
    };
  }

  /**
   * The kexec step: `trigger` makes the guest reboot into the next kernel (the SSH link drops);
   * then the new kernel must print its ready line and accept SSH. Returns the blackout (trigger
   * to SSH up in the new kernel) cut at its console landmarks. `failed` rejects when the trigger
   * reports that no kexec will come (the wait ends then, not at the deadline).
   */
  async kexec(trigger: () => Promise<void>, step = "kexec", failed?: Promise<never>): Promise<BootTiming> {
    const since = this.vm.console.mark();
    const started = performance.now();
    const kexecDone = new AbortController();
    await this.handover.arm(this.vm, since, kexecDone.signal, await this.kexecBreakpoint());
    try {
      return await this.kexecAndReconnect(trigger, step, since, started, failed);
    } finally {
      kexecDone.abort();
    }
  }

  private async kexecAndReconnect(
    trigger: () => Promise<void>,
    step: string,
    since: number,
    started: number,
    failed?: Promise<never>,
  ): Promise<BootTiming> {
    await trigger();
    const abort = new AbortController();
    failed?.catch((err: unknown) => abort.abort(err));
    const ready = await this.vm.console
      .waitFor(READY, {
        since,
        deadlineMs: DEADLINES.kexecMs,
        silenceMs: DEADLINES.silenceMs,
        step,
        signal: abort.signal,
      })
      .catch(async (err: unknown) => {
        if (!(err instanceof GuestFault) || !/^(silent|timeout)$/.test(err.kind)) throw err;
        const evidence = await kexecHangEvidence(this.vm, this.current, this.symbols);
        throw new GuestFault({
          kind: err.kind,
          boot: err.boot,
          step,
          detail: err.detail,
          excerpt: [...err.excerpt, ...evidence],
        });
      });
    // The old kernel's link is dead; closing it waits for slirp to notice, so do not wait for it.
    void this.current.close().catch(() => undefined);
    const next = await this.vm.console.watch(this.boots.reconnect(DEADLINES.sshMs, bootIdOf(ready)), {
      step: `${step}: reconnect`,
    });
    this.current = next.link;
    this.bootNo = next.boot;
    return this.timed("kexec", this.vm.console.entriesSince(since), started);
  }

  /** Records where the boot that just answered SSH spent its time since `started`. */
  private timed(via: BootTiming["via"], lines: readonly ConsoleLine[], started: number): BootTiming {
    const ended = performance.now();
    const timing = {
      boot: this.bootNo,
      via,
      totalMs: Math.round(ended - started),
      segments: bootTimeline(lines, started, ended, via).map((s) => ({ ...s, ms: Math.round(s.ms) })),
    };
    this.timings.push(timing);
    return timing;
  }

  async stop(): Promise<void> {
    await this.current.close().catch(() => undefined);
    await this.vm.stop();
  }

  consoleLog(boot: number): string {
    return this.vm.console.bootLog(boot) ?? join(this.vm.logDir, "console.log");
  }
}

/** QEMU's view of a guest that stalled under KVM: its run state and KVM's errors on stderr. */
async function describeKvmStall(vm: Vm): Promise<{ state: string; errors: string[] }> {
  const status = await vm.qmp.queryStatus().catch(() => undefined);
  const errors = await kvmErrors(vm);
  return {
    state: status ? `guest state ${status.status}` : "QMP does not answer",
    errors: errors.slice(0, 5).map((l) => `qemu: ${l}`),
  };
}
