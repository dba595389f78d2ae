// What a scenario sees of its guest: commands over SSH, uploads, the console (marks and waits),
// the kexec step, work at the next handover, and the machine whose memory the host reads. Three
// implementations: a guest of its own (guest.ts), a member of a shared guest (shared.ts) and a
// real machine reached over SSH only (machine.ts), which has no QEMU for the host to read.
import type { ConsoleMatch, ConsoleLine, WaitOptions } from "../vm/console.js";
import type { Vm } from "../vm/qemu.js";
import type { ExecResult, ExecStream } from "../vm/ssh.js";
import type { BootTiming } from "./boot-timeline.js";
import type { AtHandover, HandoverWork } from "./handover-pause.js";

/** How a scenario's guest boots. */
export interface GuestBoot {
  /** false boots with kho=off and without liveupdate=on. */
  readonly kho: boolean;
  /** Extra kernel parameters. */
  readonly append?: string;
  readonly memoryMiB?: number;
  /** NUMA nodes (QEMU -numa; RAM split evenly, node 0 lowest); default one. */
  readonly numaNodes?: number;
  /** The arch's early console (ArchSpec.earlyConsole): a crash before the console driver shows. */
  readonly earlyConsole?: boolean;
}

/** The console as a scenario uses it: positions, waits, the last lines for evidence. */
export interface SessionConsole {
  mark(): number;
  waitFor(re: RegExp, opts: WaitOptions): Promise<ConsoleMatch>;
  entriesSince(seq: number): ConsoleLine[];
  lastLines(n?: number): string[];
  /** Marks fault lines as expected until the returned function is called (not faults then). */
  allow(patterns: readonly RegExp[]): () => void;
}

/** The QEMU process whose guest-physical memory the host reads (src/memory). */
export type GuestMachine = Pick<Vm, "pid" | "qmp">;

/** Where the next kernel and its initrd are on the guest, for the agent's kexec_file_load. */
export interface NextKernelFiles {
  readonly kernel: string;
  readonly initrd: string;
}

export interface GuestSession {
  /** 1 for the first kernel, 2 after one kexec... */
  readonly boot: number;
  /** Where the guest's logs (console, QEMU) are. */
  readonly logDir: string;
  /**
   * Whether `kexec` loads the next kernel itself. A member of a shared guest: yes, once for all
   * members, after every one has preserved what it preserves. A guest of its own: no, the
   * scenario loads it (session/kexec.ts).
   */
  readonly kexecLoadsNextKernel: boolean;
  readonly console: SessionConsole;
  /**
   * The QEMU process whose memory the host reads and pauses; absent on a machine target, where
   * checks that need it are recorded as not done (`not-on-target`, see memory/access.ts).
   */
  readonly machine: GuestMachine | undefined;
  /** The next kernel's files on the guest (session/kexec.ts). */
  readonly nextKernel: NextKernelFiles;
  /**
   * Where scenarios put what they upload (the test module, a user's files): /root on a guest,
   * the harness's private directory on a machine target (it writes nowhere else there).
   */
  readonly workDir: string;
  /** Runs a shell command in the guest, watched by the console (a panic fails it at once). */
  exec(command: string, deadlineMs?: number): Promise<ExecResult>;
  /** Runs a command that must succeed; returns its stdout. */
  run(command: string, deadlineMs?: number): Promise<string>;
  /** Reads a guest file as bytes. */
  readFile(path: string): Promise<Buffer>;
  /** Copies a host file (or bytes) into the guest. */
  upload(source: string | Buffer, remotePath: string, mode?: number): Promise<void>;
  /** Starts a command whose output is read line by line (the agent holding its sessions). */
  stream(command: string): Promise<ExecStream>;
  /**
   * The kexec step: `trigger` makes the guest reboot into the next kernel; resolves when the new
   * kernel answers SSH, with the blackout cut at its console landmarks. `failed` rejects when
   * the trigger reports that no kexec will come.
   */
  kexec(trigger: () => Promise<void>, step?: string, failed?: Promise<never>): Promise<BootTiming>;
  /** Runs `work` at the next kexec's handover, with the guest paused (handover-pause.ts). */
  atNextHandover<T>(key: string, work: HandoverWork<T>): Promise<AtHandover<T>>;
}
