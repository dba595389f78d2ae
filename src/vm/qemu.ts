// Launches one QEMU guest: argv from the arch table, a private work directory for its sockets
// (several guests run at once), the serial console piped into a GuestConsole, a QMP client,
// and an SSH port forwarded on loopback. QEMU is registered with the reaper so it never outlives us.
import { appendFile, mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { archSpec, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { findInPath } from "../util/find-in-path.js";
import { GuestConsole, type ConsoleOptions } from "./console.js";
import { GuestFault } from "./fault.js";
import { PROBE_MARKER, probeStub } from "./probe-stub.js";
import { QmpClient } from "./qmp.js";
import { trackProcess } from "./reaper.js";

/** A guest's RAM unless its scenario asks for more. */
export const DEFAULT_MEMORY_MIB = 1024;

export type Accel = "tcg" | "kvm";

export type BootSource =
  | {
      readonly kind: "kernel";
      readonly kernel: string;
      readonly initrd?: string;
      /** Added after the harness's own parameters. */
      readonly append?: string;
      /** false leaves out `kho=on liveupdate=on` (a baseline boot). */
      readonly kho?: boolean;
      /** The arch's early console parameter (ArchSpec.earlyConsole). */
      readonly earlyConsole?: boolean;
    }
  /** Raw firmware loaded with -bios (the KVM probe stub). */
  | { readonly kind: "firmware"; readonly firmware: string };

export interface LaunchOptions {
  readonly arch: ArchName;
  readonly boot: BootSource;
  /** TCG unless the caller knows KVM works (see probeKvm). */
  readonly accel?: Accel;
  readonly memoryMiB?: number;
  readonly smp?: number;
  /**
   * NUMA nodes (default: none, one node). RAM is split evenly in node order (node 0 lowest),
   * each node's share a memory backend of its own; each node is a socket of smp/nodes CPUs.
   */
  readonly numaNodes?: number;
  /** Forward a loopback port to the guest's sshd (port 22 at 10.0.2.15, slirp's DHCP address). */
  readonly ssh?: boolean;
  /** Shown in `ps` and in errors. */
  readonly name?: string;
  /** Where console.log, boot-N.log, qemu.cmd and qemu-stderr.log go (default: the work dir). */
  readonly logDir?: string;
  readonly console?: Omit<ConsoleOptions, "logDir">;
  /** Start with the CPUs stopped (-S); `vm.qmp.cont()` starts them. */
  readonly paused?: boolean;
  readonly extraArgs?: readonly string[];
  /** How long QEMU may take to open its QMP socket. */
  readonly startDeadlineMs?: number;
  /** Have the kernel SIGKILL QEMU if the harness dies, even by SIGKILL (util-linux setpriv). */
  readonly pdeathsig?: boolean;
}

export interface QemuExit {
  readonly code: number | null;
  readonly signal: string | null;
  /** QEMU's last stderr lines (its own errors: bad options, KVM failures). */
  readonly stderr: readonly string[];
}

/** slirp's fixed address for the guest; the forward goes there. */
export const GUEST_IP = "10.0.2.15";

const STDERR_LINES = 40;
/** QEMU's whole stderr, in the guest's log directory. */
const STDERR_LOG = "qemu-stderr.log";

/** QEMU option values escape commas by doubling them. */
const optValue = (s: string) => s.replaceAll(",", ",,");

/**
 * The kernel brings eth0 up with slirp's fixed addresses itself (CONFIG_IP_PNP, no DHCP), which
 * spares the guest's init four `ip` processes in every boot; the init still does it by hand for
 * a kernel without IP_PNP.
 */
const IP_CONFIG = `ip=${GUEST_IP}::10.0.2.2:255.255.255.0::eth0:off`;

/** The kernel command line: the harness's parameters first, the caller's last (they win). */
export function kernelCmdline(
  arch: ArchName,
  boot: Extract<BootSource, { kind: "kernel" }>,
  network = false,
): string {
  const kho = boot.kho === false ? [] : ["kho=on", "liveupdate=on"];
  const ip = network ? [IP_CONFIG] : [];
  const spec = archSpec(arch);
  const early = boot.earlyConsole ? [spec.earlyConsole] : [];
  return [
    `console=${spec.console}`,
    ...early,
    ...spec.kernelParams,
    ...kho,
    ...ip,
    "panic=-1",
    boot.append ?? "",
  ]
    .join(" ")
    .trim();
}

/** QEMU's argv (without the binary). Pure, so tests and reproducer lines can use it. */
export function qemuArgs(opts: LaunchOptions, paths: { qmpSocket: string; consoleLog: string }): string[] {
  const spec = archSpec(opts.arch);
  const args = [
    ...[
      "-M",
      spec.machine,
      "-cpu",
      opts.accel === "kvm" ? "host" : spec.cpu,
      "-accel",
      opts.accel === "kvm" ? "kvm" : spec.tcgAccel,
    ],
    ...["-m", String(opts.memoryMiB ?? DEFAULT_MEMORY_MIB)],
    ...numaArgs(opts.memoryMiB ?? DEFAULT_MEMORY_MIB, opts.smp ?? 2, opts.numaNodes ?? 1),
    ...["-nographic", "-nodefaults", "-no-reboot", "-name", optValue(opts.name ?? "kho-guest")],
    // The serial console goes to QEMU's stdout (a pipe we read live) and, raw, to console.log,
    // which QEMU itself writes so it is complete even if the harness dies.
    ...[
      "-chardev",
      `stdio,id=con0,signal=off,logfile=${optValue(paths.consoleLog)}`,
      "-serial",
      "chardev:con0",
    ],
    ...["-qmp", `unix:${optValue(paths.qmpSocket)},server=on,wait=off`],
    // Lets a dump taken over QMP carry the guest's VMCOREINFO (for drgn and crash).
    ...["-device", "vmcoreinfo"],
  ];
  if (opts.boot.kind === "kernel") {
    args.push("-kernel", opts.boot.kernel);
    if (opts.boot.initrd) args.push("-initrd", opts.boot.initrd);
    args.push("-append", kernelCmdline(opts.arch, opts.boot, opts.ssh === true));
  } else {
    args.push("-bios", opts.boot.firmware);
  }
  if (opts.ssh) {
    // Port 0: the host kernel picks a free loopback port when QEMU binds, so parallel guests
    // never race for one; we read the port back with `info usernet`.
    args.push(
      "-netdev",
      "user,id=n0,hostfwd=tcp:127.0.0.1:0-:22",
      "-device",
      "virtio-net-pci,netdev=n0,romfile=",
    );
  }
  if (opts.paused) args.push("-S");
  args.push(...(opts.extraArgs ?? []));
  return args;
}

/** Each node's share of `memoryMiB`: 2 MiB multiples, the last node taking what is left. */
export function numaNodeSizesMiB(memoryMiB: number, nodes: number): number[] {
  const each = Math.floor(memoryMiB / nodes / 2) * 2;
  return Array.from({ length: nodes }, (_, i) => (i === nodes - 1 ? memoryMiB - each * (nodes - 1) : each));
}

/**
 * -smp, and -object/-numa for `nodes` nodes (none for one: the machine's own RAM, as before).
 * Each node is a socket of its own: CPUs of one socket share a last-level cache, and a kernel
 * that finds cache siblings on two nodes warns (x86's topology_sane()).
 */
function numaArgs(memoryMiB: number, smp: number, nodes: number): string[] {
  if (nodes <= 1) return ["-smp", String(smp)];
  if (!Number.isInteger(nodes) || nodes > 8 || memoryMiB / nodes < 128 || smp % nodes !== 0)
    throw new HarnessError(
      `${nodes} NUMA nodes with ${memoryMiB} MiB and ${smp} CPUs: give 2..8 nodes of 128 MiB or more each and a CPU count they divide`,
    );
  const perNode = smp / nodes;
  return [
    ...["-smp", `${smp},sockets=${nodes},cores=${perNode},threads=1`],
    ...numaNodeSizesMiB(memoryMiB, nodes).flatMap((size, node) => [
      "-object",
      `memory-backend-ram,id=ram-node${node},size=${size}M`,
      "-numa",
      `node,nodeid=${node},memdev=ram-node${node},cpus=${node * perNode}-${(node + 1) * perNode - 1}`,
    ]),
  ];
}

/** The host port slirp forwards to the guest's `guestPort`, from HMP `info usernet`. */
export function parseHostfwdPort(infoUsernet: string, guestPort = 22): number | undefined {
  for (const line of infoUsernet.split("\n")) {
    const m = /TCP\[HOST_FORWARD\]\s+\d+\s+\S+\s+(\d+)\s+\S+\s+(\d+)/.exec(line);
    if (m && Number(m[2]) === guestPort) return Number(m[1]);
  }
  return undefined;
}

export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(" ");
}

export interface Vm {
  readonly name: string;
  readonly arch: ArchName;
  readonly pid: number;
  /** Private to this guest: QMP socket (and logs unless logDir was given). */
  readonly workDir: string;
  readonly logDir: string;
  /** The QEMU command, runnable as is (also written to qemu.cmd). */
  readonly command: readonly string[];
  readonly qmp: QmpClient;
  readonly console: GuestConsole;
  /** Loopback port forwarded to the guest's port 22, when `ssh` was asked for. */
  readonly sshPort: number | undefined;
  /** Settles when QEMU exits; never rejects. */
  readonly exited: Promise<QemuExit>;
  /** Set once QEMU has exited. */
  readonly exit: QemuExit | undefined;
  /** QMP quit, SIGKILL after `graceMs`; then removes the work dir's sockets. Idempotent. */
  stop(graceMs?: number): Promise<QemuExit>;
}

let setprivPath: string | null | undefined;

function findSetpriv(): string | undefined {
  setprivPath ??= findInPath("setpriv") ?? null;
  return setprivPath ?? undefined;
}

export function describeExit(exit: QemuExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const last = exit.stderr.at(-1);
  return `QEMU ${how}${last ? `: ${last}` : ""}`;
}

export async function launchVm(opts: LaunchOptions): Promise<Vm> {
  const spec = archSpec(opts.arch);
  const name = opts.name ?? `kho-${opts.arch}`;
  const workDir = await mkdtemp(join(tmpdir(), "kho-vm-"));
  const logDir = opts.logDir ?? workDir;
  await mkdir(logDir, { recursive: true });
  const paths = { qmpSocket: join(workDir, "qmp.sock"), consoleLog: join(logDir, "console.log") };
  const command = [spec.qemuBinary, ...qemuArgs({ ...opts, name }, paths)];
  await writeFile(join(logDir, "qemu.cmd"), `${shellQuote(command)}\n`);

  const setpriv = opts.pdeathsig === false ? undefined : findSetpriv();
  const [file, ...args] = setpriv ? [setpriv, "--pdeathsig", "SIGKILL", "--", ...command] : command;
  const guestConsole = new GuestConsole({ ...opts.console, logDir });
  // cleanup:false: the reaper owns killing QEMU (execa's signal-exit would only send SIGTERM).
  const child = execa(file ?? spec.qemuBinary, args, { buffer: false, reject: false, cleanup: false });
  const stderr: string[] = [];
  child.stdout.on("data", (chunk: Buffer) => guestConsole.feed(chunk));
  child.stderr.on("data", (chunk: Buffer) => {
    stderr.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    stderr.splice(0, Math.max(0, stderr.length - STDERR_LINES));
    void appendFile(join(logDir, STDERR_LOG), chunk).catch(() => undefined);
  });
  const untrack = child.pid ? trackProcess(child.pid, name) : () => undefined;
  const started = new AbortController();
  let exit: QemuExit | undefined;
  const exited = child
    .then(
      (r): QemuExit => {
        // No exit code and no signal: QEMU never ran (binary missing...); execa says why.
        const spawnError = r.exitCode === undefined && !r.signal && r.shortMessage ? [r.shortMessage] : [];
        return { code: r.exitCode ?? null, signal: r.signal ?? null, stderr: [...stderr, ...spawnError] };
      },
      (err: unknown): QemuExit => ({ code: null, signal: null, stderr: [...stderr, String(err)] }),
    )
    .then((e) => {
      exit = e;
      untrack();
      started.abort();
      guestConsole.end(describeExit(e));
      return e;
    });

  let qmp: QmpClient;
  let sshPort: number | undefined;
  try {
    qmp = await QmpClient.connect(paths.qmpSocket, {
      deadlineMs: opts.startDeadlineMs ?? 10_000,
      signal: started.signal,
    });
    if (opts.ssh) {
      sshPort = parseHostfwdPort(await qmp.humanMonitorCommand("info usernet"));
      if (sshPort === undefined) throw new Error("info usernet shows no forward to port 22");
    }
  } catch (err) {
    child.kill("SIGKILL");
    const e = await exited;
    const why = exit && started.signal.aborted && e.stderr.length ? describeExit(e) : (err as Error).message;
    if (logDir !== workDir) await rm(workDir, { recursive: true, force: true });
    throw new HarnessError(`QEMU for ${name} did not start: ${why}`, [shellQuote(command), ...e.stderr]);
  }

  let stopping: Promise<QemuExit> | undefined;
  const stop = async (graceMs: number): Promise<QemuExit> => {
    if (!exit) {
      const grace = { ref: false };
      await Promise.race([qmp.quit().catch(() => undefined), sleep(graceMs, undefined, grace)]);
      const gone = await Promise.race([exited.then(() => true), sleep(graceMs, false, grace)]);
      if (!gone) child.kill("SIGKILL");
    }
    const e = await exited;
    qmp.close();
    // The logs stay; the sockets go (and the whole work dir when the logs live elsewhere).
    await rm(logDir === workDir ? paths.qmpSocket : workDir, { recursive: true, force: true });
    return e;
  };

  return {
    name,
    arch: opts.arch,
    pid: child.pid ?? -1,
    workDir,
    logDir,
    command,
    qmp,
    console: guestConsole,
    sshPort,
    exited,
    get exit() {
      return exit;
    },
    stop(graceMs = 5_000) {
      stopping ??= stop(graceMs);
      return stopping;
    },
  };
}

export type KvmProbe = { readonly usable: true } | { readonly usable: false; readonly reason: string };

/**
 * Whether KVM really runs `arch` guests here: /dev/kvm can exist and still hang guests, so a
 * stub (or, given `kernel`, a real kernel up to its root-mount panic) must print under KVM
 * within `deadlineMs`.
 */
export async function probeKvm(
  arch: ArchName,
  deadlineMs: number,
  opts: { kernel?: string } = {},
): Promise<KvmProbe> {
  const spec = archSpec(arch);
  if (spec.kvmHostArch !== process.arch) {
    return { usable: false, reason: `KVM cannot run ${arch} guests on a ${process.arch} host` };
  }
  try {
    await (await open("/dev/kvm", "r+")).close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      return { usable: false, reason: "/dev/kvm does not exist (no KVM in this kernel or container)" };
    if (code === "EACCES" || code === "EPERM") {
      return { usable: false, reason: "/dev/kvm is not accessible to this user (join the kvm group)" };
    }
    return { usable: false, reason: `/dev/kvm cannot be opened: ${(err as Error).message}` };
  }
  const dir = await mkdtemp(join(tmpdir(), "kho-kvm-probe-"));
  let vm: Vm | undefined;
  try {
    const stub = join(dir, "stub.bin");
    await writeFile(stub, probeStub(spec));
    const boot: BootSource = opts.kernel
      ? { kind: "kernel", kernel: opts.kernel, kho: false }
      : { kind: "firmware", firmware: stub };
    vm = await launchVm({
      arch,
      boot,
      accel: "kvm",
      memoryMiB: opts.kernel ? 256 : 16,
      smp: 1,
      logDir: dir,
      name: "kho-kvm-probe",
    });
    const marker = opts.kernel
      ? /VFS: Unable to mount root fs|Freeing unused kernel/
      : new RegExp(PROBE_MARKER);
    await vm.console.waitFor(marker, {
      deadlineMs,
      step: "KVM probe",
      expect: [/Kernel panic - not syncing: VFS/],
    });
    return { usable: true };
  } catch (err) {
    if (vm && err instanceof GuestFault && (err.kind === "timeout" || err.kind === "silent")) {
      return { usable: false, reason: await whyStuck(vm, deadlineMs) };
    }
    return { usable: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    await vm?.stop(1_000);
    await rm(dir, { recursive: true, force: true });
  }
}

/** What QEMU says about a probe guest that printed nothing: a KVM error, or a plain hang. */
async function whyStuck(vm: Vm, deadlineMs: number): Promise<string> {
  const status = await vm.qmp.queryStatus().catch(() => undefined);
  const regs = await vm.qmp.humanMonitorCommand("info registers").catch(() => "");
  const pc = programCounters(vm.arch, regs)[0];
  const kvmError = (await kvmErrors(vm)).join("; ");
  const where = `${status ? `state ${status.status}` : "no QMP answer"}${pc ? `, pc=${pc}` : ""}`;
  return kvmError
    ? `a probe guest under KVM failed: ${kvmError} (${where})`
    : `a probe guest under KVM printed nothing within ${deadlineMs / 1000}s (${where})`;
}

/**
 * The lines of QEMU's stderr that speak of KVM (a failed KVM_RUN, an internal error, an emulation
 * failure), in order: why a guest stalled under KVM, when QEMU knows. Empty when there are none
 * or no log.
 */
export async function kvmErrors(vm: Pick<Vm, "logDir">): Promise<string[]> {
  const stderr = await readFile(join(vm.logDir, STDERR_LOG), "utf8").catch(() => "");
  return stderr.split("\n").filter((l) => /KVM|emulation failure/i.test(l));
}

/** Each vCPU's program counter (hex) in QEMU's `info registers [-a]` output, in CPU order. */
export function programCounters(arch: ArchName, infoRegisters: string): string[] {
  const { source, flags } = archSpec(arch).pcRegister;
  const every = new RegExp(source, flags.includes("g") ? flags : `${flags}g`);
  return [...infoRegisters.matchAll(every)].flatMap((m) => (m[1] === undefined ? [] : [m[1]]));
}
