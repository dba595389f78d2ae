// One guest under test: QEMU booted on the harness's kernel and initramfs, the SSH link to
// whichever kernel runs now, and the kexec step as a state machine: trigger, lose the link,
// see the new kernel's ready line on the console, reconnect to the new boot.
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import type { GuestBoot } from "../scenarios/types.js";
import type { Logger } from "../util/log.js";
import type { SshKeys } from "../vm/keys.js";
import { launchVm, type Accel, type Vm } from "../vm/qemu.js";
import { GuestBoots, type ExecResult, type ExecStream, type SshLink } from "../vm/ssh.js";

/** Deadlines under TCG, generous enough for a loaded 2-core host. */
export const DEADLINES = {
  bootMs: 180_000,
  silenceMs: 90_000,
  sshMs: 60_000,
  commandMs: 120_000,
  kexecMs: 180_000,
} as const;

const READY = /KHO-GUEST: ready boot_id=(\S+)/;

export interface GuestOptions {
  readonly arch: ArchName;
  readonly kernel: string;
  readonly initrd: string;
  /** Tar disk with next-kernel and next-initrd (see overlay.ts). */
  readonly nextDisk: string;
  readonly boot: GuestBoot;
  readonly accel: Accel;
  readonly keys: SshKeys;
  readonly logDir: string;
  readonly name: string;
  readonly log: Logger;
}

export class Guest {
  private constructor(
    readonly vm: Vm,
    private readonly boots: GuestBoots,
    private current: SshLink,
    private bootNo: number,
  ) {}

  /** Boots the guest and connects to it; the console watchdog guards the whole boot. */
  static async start(opts: GuestOptions): Promise<Guest> {
    const vm = await launchVm({
      arch: opts.arch,
      name: opts.name,
      accel: opts.accel,
      memoryMiB: opts.boot.memoryMiB ?? 1024,
      smp: 2,
      ssh: true,
      logDir: opts.logDir,
      boot: {
        kind: "kernel",
        kernel: opts.kernel,
        initrd: opts.initrd,
        kho: opts.boot.kho,
        ...(opts.boot.append ? { append: opts.boot.append } : {}),
      },
      extraArgs: [
        "-drive",
        `file=${opts.nextDisk},format=raw,if=none,id=next,readonly=on`,
        "-device",
        "virtio-blk-pci,drive=next,serial=kho-next",
      ],
    });
    try {
      await vm.console.waitFor(READY, {
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
      const first = await vm.console.watch(boots.connect(DEADLINES.sshMs), { step: "ssh" });
      return new Guest(vm, boots, first.link, first.boot);
    } catch (err) {
      await vm.stop(1_000);
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

  /** Runs a shell command in the guest, watched by the console (a panic fails it at once). */
  exec(command: string, deadlineMs: number = DEADLINES.commandMs): Promise<ExecResult> {
    return this.vm.console.watch(this.current.exec(command, { deadlineMs }), {
      step: command.split(" ")[0] ?? command,
    });
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
    return this.vm.console.watch(this.current.upload(source, remotePath, mode), {
      step: `upload ${remotePath}`,
    });
  }

  stream(command: string): Promise<ExecStream> {
    return this.current.execStream(command);
  }

  /**
   * The kexec step: `trigger` makes the guest reboot into the next kernel (the SSH link drops);
   * then the new kernel must print its ready line and accept SSH. Returns the blackout time.
   */
  async kexec(trigger: () => Promise<void>, step = "kexec"): Promise<{ blackoutMs: number }> {
    const since = this.vm.console.mark();
    const started = performance.now();
    await trigger();
    await this.vm.console.waitFor(READY, {
      since,
      deadlineMs: DEADLINES.kexecMs,
      silenceMs: DEADLINES.silenceMs,
      step,
    });
    await this.current.close().catch(() => undefined);
    const next = await this.vm.console.watch(this.boots.reconnect(DEADLINES.sshMs), {
      step: `${step}: reconnect`,
    });
    this.current = next.link;
    this.bootNo = next.boot;
    return { blackoutMs: performance.now() - started };
  }

  async stop(): Promise<void> {
    await this.current.close().catch(() => undefined);
    await this.vm.stop();
  }

  consoleLog(boot: number): string {
    return this.vm.console.bootLog(boot) ?? join(this.vm.logDir, "console.log");
  }
}
