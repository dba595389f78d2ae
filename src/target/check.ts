// `kho target check`: a machine reached only over SSH (a lab server, not a guest the harness
// started), looked at before anything runs on it. Reached with the user's key and a host key
// the user pinned (known_hosts), never a key the harness makes or installs; refused unless the
// machine carries the marker file, because the scenarios kexec it; then its running kernel is
// read as `kho kernel inspect` reads an image (/proc/config.gz, else /boot/config-RELEASE) and
// what the harness could and could not check there is listed.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { gunzipSync } from "node:zlib";
import ssh2 from "ssh2";
import { isArchName, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { parseConfig, type ConfigMap } from "../kernel/config.js";
import { readinessOf, type ReadinessRow } from "../kernel/inspect.js";
import { scaled } from "../util/deadline.js";
import { endProcessGroup } from "../util/process-group.js";
import { trackProcess } from "../vm/reaper.js";
import { connectSsh, SshFailure, type SshLink } from "../vm/ssh.js";
import { knownHostKeys, knownHostsName } from "./known-hosts.js";
import { describeTarget, type TargetAddress } from "./url.js";

/** The file a machine must have before the harness touches it (README, "Real machines"). */
export const TARGET_MARKER = "/etc/kho-harness-target";

export interface TargetLoginOptions {
  readonly address: TargetAddress;
  /** The private key to log in with; default the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa. */
  readonly identity?: string;
  /** Where the target's host key is pinned; default ~/.ssh/known_hosts. */
  readonly knownHosts?: string;
  /** How long to keep trying to reach the machine (before the timeout factor). */
  readonly deadlineMs?: number;
  /** A shell command whose output is the machine's console (checked by probeConsole). */
  readonly consoleCmd?: string;
}

export type CapabilityStatus = "possible" | "not possible";

/** A check of the scenarios and whether this target allows it. */
export interface TargetCapability {
  readonly check: string;
  readonly status: CapabilityStatus;
  readonly why: string;
}

export interface TargetProblem {
  readonly sentence: string;
  readonly evidence: readonly string[];
}

export interface TargetReport {
  readonly target: string;
  /** `uname -m` as the machine says it, and the harness's name for it when it has one. */
  readonly machine: string;
  readonly arch: ArchName | undefined;
  readonly release: string;
  readonly bootId: string;
  readonly cmdline: string;
  /** Where the config came from: "/proc/config.gz", "/boot/config-RELEASE", or undefined. */
  readonly configSource: string | undefined;
  readonly config: ConfigMap | undefined;
  readonly readiness: readonly ReadinessRow[];
  /** Whether KHO is on for this boot: kho=on on the command line or enabled by default. */
  readonly khoEnabled: boolean;
  readonly liveupdateDevice: boolean;
  readonly kcore: boolean;
  /** What stands between the harness and a kexec: the sysctl and the lockdown mode ("none"). */
  readonly kexec: { readonly loadDisabled: boolean; readonly lockdown: string };
  /** The console command's probe, when one was given. */
  readonly console: ConsoleProbe | undefined;
  readonly capabilities: readonly TargetCapability[];
  readonly problems: readonly TargetProblem[];
  readonly ready: boolean;
}

const DEFAULT_IDENTITIES = ["id_ed25519", "id_ecdsa", "id_rsa"];

/** The private key text to log in with, or one sentence on why there is none to use. */
export async function loadIdentity(given: string | undefined): Promise<{ path: string; key: string }> {
  const candidates = given ? [given] : DEFAULT_IDENTITIES.map((n) => join(homedir(), ".ssh", n));
  for (const path of candidates) {
    const key = await readFile(path, "utf8").catch(() => undefined);
    if (key === undefined) continue;
    const parsed = ssh2.utils.parseKey(key);
    if (parsed instanceof Error) {
      const encrypted = /passphrase|encrypted/i.test(parsed.message);
      throw new HarnessError(
        encrypted
          ? `the SSH key ${path} is protected by a passphrase: give the harness a key without one (--identity) for the lab machines`
          : `${path} is not an SSH private key the harness can use: ${parsed.message}`,
        [],
        2,
      );
    }
    return { path, key };
  }
  throw new HarnessError(
    given
      ? `cannot read the SSH key ${given} (--identity)`
      : `no SSH key to log in with: none of ~/.ssh/${DEFAULT_IDENTITIES.join(", ")} exists; name one with --identity`,
    [],
    2,
  );
}

/** The host keys pinned for the target, or one sentence on how to pin one. */
export async function pinnedHostKeys(address: TargetAddress, knownHosts?: string): Promise<string[]> {
  const file = knownHosts ?? join(homedir(), ".ssh", "known_hosts");
  const text = await readFile(file, "utf8").catch(() => "");
  const found = knownHostKeys(text, address.host, address.port);
  const name = knownHostsName(address.host, address.port);
  if (found.keys.length > 0) return [...found.keys];
  const scan = `ssh-keyscan${address.port === 22 ? "" : ` -p ${address.port}`} ${address.host}`;
  throw new HarnessError(
    `${name} has no host key in ${file}: the harness only talks to a machine whose key you pinned; check the machine's key and add it (for example \`${scan} >> ${file}\`, then compare the fingerprint with the machine's own)`,
    found.revoked.map((k) => `revoked for ${name}: ${k}`),
    2,
  );
}

/** Connects to the target as the user asked: their key, their pinned host key. */
export async function connectTarget(opts: TargetLoginOptions): Promise<SshLink> {
  const identity = await loadIdentity(opts.identity);
  const hostKeys = await pinnedHostKeys(opts.address, opts.knownHosts);
  try {
    return await connectSsh({
      host: opts.address.host,
      port: opts.address.port,
      username: opts.address.user,
      privateKey: identity.key,
      hostKey: hostKeys,
      deadlineMs: scaled(opts.deadlineMs ?? 30_000),
    });
  } catch (err) {
    // Another host key or a refused key is the setup's to fix, as a missing pin is: exit 2.
    if (err instanceof SshFailure && (err.kind === "host-key" || err.kind === "auth"))
      throw new HarnessError(
        err.kind === "auth" ? `${err.message} (--identity ${identity.path})` : err.message,
        err.evidence,
        2,
      );
    throw err;
  }
}

/** Refuses, before anything else runs there, a machine without the marker file. */
export async function assertMarker(link: SshLink, target: string): Promise<void> {
  const r = await link.exec(`test -e ${TARGET_MARKER}`, { deadlineMs: scaled(30_000) });
  if (r.code === 0) return;
  throw new HarnessError(
    `${target} has no ${TARGET_MARKER}: the harness kexecs the machines it tests, so it touches only a machine that carries this marker (create the file there to allow it)`,
    [`test -e ${TARGET_MARKER}: exit ${r.code ?? r.signal}`],
    2,
  );
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

const FACTS = [
  "uname -m",
  "uname -r",
  "cat /proc/sys/kernel/random/boot_id",
  "cat /proc/cmdline",
  "if test -e /dev/liveupdate; then echo yes; else echo no; fi",
  "if test -r /proc/kcore; then echo yes; else echo no; fi",
  "cat /proc/sys/kernel/kexec_load_disabled 2>/dev/null || echo unknown",
  // "none [integrity] confidentiality": the bracketed mode is on; absent without the LSM
  "cat /sys/kernel/security/lockdown 2>/dev/null || echo absent",
].join("; ");

/** The lockdown mode in force, from securityfs's "none [integrity] confidentiality". */
export function lockdownMode(line: string): string | undefined {
  return /\[(\w+)\]/.exec(line)?.[1];
}

/** The running kernel's config: /proc/config.gz (IKCONFIG_PROC), else Debian's /boot file. */
async function readTargetConfig(
  link: SshLink,
  release: string,
): Promise<{ source: string; config: ConfigMap } | undefined> {
  const gz = await link.exec("base64 /proc/config.gz", { deadlineMs: scaled(60_000) });
  if (gz.code === 0 && gz.stdout.trim()) {
    const bytes = gunzipSync(Buffer.from(gz.stdout, "base64"));
    return { source: "/proc/config.gz", config: parseConfig(bytes.toString("utf8")) };
  }
  if (!/^[\w.+~-]+$/.test(release)) return undefined;
  const path = `/boot/config-${release}`;
  const file = await link.exec(`cat ${path}`, { deadlineMs: scaled(60_000) });
  if (file.code === 0 && file.stdout.trim()) return { source: path, config: parseConfig(file.stdout) };
  return undefined;
}

/** What the harness can check on a machine target today, and why not where it cannot. */
function capabilitiesOf(kcore: boolean): TargetCapability[] {
  return [
    {
      check: "commands, uploads, the agent's and the test module's checks in both kernels",
      status: "possible",
      why: "over SSH, as on a guest",
    },
    {
      check: "the kexec and the new kernel's return (a new boot id)",
      status: "possible",
      why: "over SSH; the console only with --console-cmd",
    },
    {
      check: "memory read by the host (frames, the KHO FDT, the preserved-memory radix tree)",
      status: "not possible",
      why: kcore
        ? "the machine has /proc/kcore, but the harness reads memory only through QEMU so far"
        : "no QEMU to read it through and no /proc/kcore (CONFIG_PROC_KCORE)",
    },
    {
      check: "the pause at the kexec (the outgoing handover read before the jump)",
      status: "not possible",
      why: "it stops the guest's vCPUs through QEMU",
    },
    {
      check: "guests of a given memory size or NUMA layout, the corruption matrix",
      status: "not possible",
      why: "they need a guest the harness starts",
    },
  ];
}

function problemsOf(
  target: string,
  machine: string,
  release: string,
  source: string | undefined,
  readiness: readonly ReadinessRow[],
  khoEnabled: boolean,
  kexec: TargetReport["kexec"],
): TargetProblem[] {
  const problems: TargetProblem[] = [];
  if (!isArchName(machine === "aarch64" ? "arm64" : machine))
    problems.push({
      sentence: `${target} is ${machine}: the harness tests x86_64 and arm64 machines only`,
      evidence: [`uname -m: ${machine}`],
    });
  if (source === undefined)
    problems.push({
      sentence: `cannot tell what ${target}'s kernel ${release} supports: it has no /proc/config.gz (CONFIG_IKCONFIG_PROC) and no readable /boot/config-${release}`,
      evidence: [],
    });
  for (const row of readiness) {
    if (!row.required || row.status !== "missing") continue;
    problems.push({
      sentence: `${target}'s running kernel ${release} has CONFIG_${row.options[0] ?? row.feature} off: boot it into a kernel with CONFIG_KEXEC_HANDOVER=y (and LIVEUPDATE) first`,
      evidence: row.options.map(
        (o, i) => `CONFIG_${o}=${row.values[i] ?? "(absent)"} (${source ?? "no config"})`,
      ),
    });
  }
  if (kexec.loadDisabled)
    problems.push({
      sentence: `${target} has kexec turned off for this boot (kernel.kexec_load_disabled=1, which only a reboot undoes): the scenarios kexec the machine`,
      evidence: ["/proc/sys/kernel/kexec_load_disabled: 1"],
    });
  if (kexec.lockdown !== "none")
    problems.push({
      sentence: `${target} runs in kernel lockdown (${kexec.lockdown}): kexec_file_load takes only a signed next kernel there, and the harness's are not signed`,
      evidence: [`/sys/kernel/security/lockdown: ${kexec.lockdown}`],
    });
  if (source !== undefined && problems.length === 0 && !khoEnabled)
    problems.push({
      sentence: `${target}'s kernel ${release} has KHO built in but not enabled for this boot: boot it with kho=on (and liveupdate=on)`,
      evidence: ["CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT is not set and /proc/cmdline has no kho=on"],
    });
  return problems;
}

/** The console command's test: did a line written to the machine's /dev/kmsg come out of it? */
export interface ConsoleProbe {
  readonly command: string;
  readonly seen: boolean;
  /** From the first write to the line coming out (or to the deadline). */
  readonly ms: number;
  /** How many probe lines were written (one every PROBE_EVERY_MS until one came out). */
  readonly writes: number;
  /** The command's last lines, as evidence. */
  readonly tail: readonly string[];
}

const PROBE_DEADLINE_MS = 10_000;
const PROBE_EVERY_MS = 2_000;

/**
 * Runs the console command (`ipmitool ... sol activate`, a `socat` to a serial server) and writes
 * a line with a fresh nonce to the machine's /dev/kmsg over SSH until it comes out of the
 * command: proof that the command shows this machine's console. The line is KERN_ERR, so a
 * console under `quiet` prints it; it is written again every 2 s, for a command that takes a
 * while to attach. The command's process group is ended afterwards.
 */
export async function probeConsole(link: SshLink, command: string): Promise<ConsoleProbe> {
  const nonce = randomUUID();
  const child = spawn("bash", ["-c", command], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const untrack =
    child.pid !== undefined ? trackProcess(-child.pid, "console command", "SIGTERM") : () => false;
  let text = "";
  const started = performance.now();
  const deadline = started + scaled(PROBE_DEADLINE_MS);
  let writes = 0;
  try {
    const seen = new Promise<boolean>((resolve) => {
      const look = () => text.includes(nonce) && resolve(true);
      child.stdout.on("data", (d: Buffer) => {
        text = (text + d.toString()).slice(-65_536); // a console can print for ever
        look();
      });
      child.stderr.on("data", (d: Buffer) => (text = (text + d.toString()).slice(-65_536)));
      child.on("error", () => resolve(false));
      child.on("close", () => resolve(text.includes(nonce)));
    });
    let found = false;
    while (!found && performance.now() < deadline) {
      writes++;
      await link.exec(`echo '<3>kho-harness: console probe ${nonce}' > /dev/kmsg`, {
        deadlineMs: scaled(30_000),
      });
      const wait = Math.min(PROBE_EVERY_MS, Math.max(0, deadline - performance.now()));
      found = await Promise.race([seen, sleep(wait).then(() => false)]);
    }
    return {
      command,
      seen: found,
      ms: Math.round(performance.now() - started),
      writes,
      tail: text.trimEnd().split("\n").slice(-5),
    };
  } finally {
    if (child.pid !== undefined) await endProcessGroup(child.pid, 1_000);
    untrack();
  }
}

/** Reaches the target, checks the marker, reads its kernel: the whole `kho target check`. */
export async function checkTarget(opts: TargetLoginOptions): Promise<TargetReport> {
  const target = describeTarget(opts.address);
  const link = await connectTarget(opts);
  try {
    await assertMarker(link, target);
    const facts = await link.exec(FACTS, { deadlineMs: scaled(30_000) });
    const [
      machine = "",
      release = "",
      bootId = "",
      cmdline = "",
      dev = "",
      kcoreLine = "",
      disabled = "",
      lockdown = "",
    ] = facts.stdout.split("\n").map((l) => l.trim());
    if (facts.code !== 0 || !machine || !release)
      throw new HarnessError(`${target} did not answer the harness's first questions (uname, /proc)`, [
        `exit ${facts.code ?? facts.signal}`,
        ...facts.stderr.trim().split("\n").slice(-5),
      ]);
    const read = await readTargetConfig(link, release);
    const config = read?.config;
    const readiness = readinessOf(config);
    const khoEnabled =
      /(^|\s)kho=(on|1|y)(\s|$)/.test(cmdline) || config?.get("KEXEC_HANDOVER_ENABLE_DEFAULT") === "y";
    const kexec = { loadDisabled: disabled === "1", lockdown: lockdownMode(lockdown) ?? "none" };
    const problems = problemsOf(target, machine, release, read?.source, readiness, khoEnabled, kexec);
    const console = opts.consoleCmd === undefined ? undefined : await probeConsole(link, opts.consoleCmd);
    if (console && !console.seen)
      problems.push({
        sentence: `the console command did not show the line the harness wrote to ${target}'s /dev/kmsg within ${Math.round(console.ms / 1000)}s (${plural(console.writes, "write")}): it is not this machine's console, or it is not connected`,
        evidence: [`--console-cmd ${console.command}`, ...console.tail.map((l) => `console: ${l}`)],
      });
    const arch = machine === "aarch64" ? "arm64" : machine;
    const kcore = kcoreLine === "yes";
    return {
      target,
      machine,
      arch: isArchName(arch) ? arch : undefined,
      release,
      bootId,
      cmdline,
      configSource: read?.source,
      config,
      readiness,
      khoEnabled,
      liveupdateDevice: dev === "yes",
      kcore,
      kexec,
      console,
      capabilities: capabilitiesOf(kcore),
      problems,
      ready: problems.length === 0,
    };
  } finally {
    await link.close().catch(() => undefined);
  }
}

/** The report as text: facts, the readiness table, what can be checked, the verdict. */
export function formatTargetReport(r: TargetReport): string {
  const facts: [string, string][] = [
    ["target", r.target],
    ["machine", r.arch && r.arch !== r.machine ? `${r.machine} (${r.arch})` : r.machine],
    ["release", r.release],
    ["boot id", r.bootId],
    ["command line", r.cmdline],
    ["config", r.configSource ? `${r.configSource}, ${r.config?.size ?? 0} options` : "unknown"],
    ["KHO", r.khoEnabled ? "enabled for this boot" : "not enabled for this boot"],
    ["/dev/liveupdate", r.liveupdateDevice ? "present" : "absent"],
    ["/proc/kcore", r.kcore ? "present" : "absent"],
    ["kexec", r.kexec.loadDisabled ? "disabled (kexec_load_disabled=1)" : "allowed"],
    ["lockdown", r.kexec.lockdown],
    [
      "console",
      r.console
        ? `${r.console.seen ? "shows" : "does not show"} this machine's /dev/kmsg (${r.console.ms} ms, ${plural(r.console.writes, "write")}): ${r.console.command}`
        : "none (--console-cmd)",
    ],
  ];
  const w = Math.max(...facts.map(([k]) => k.length));
  const lines = facts.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  lines.push("");
  for (const row of r.readiness)
    lines.push(
      `${row.feature.padEnd(14)}  ${row.status.padEnd(7)}  ${row.required ? "required" : "optional"}  ${row.options
        .map((o, i) => `CONFIG_${o}=${row.values[i] ?? "(absent)"}`)
        .join(" ")}`,
    );
  lines.push("");
  for (const c of r.capabilities) lines.push(`${c.status.padEnd(12)}  ${c.check}: ${c.why}`);
  lines.push("");
  if (r.ready) lines.push(`verdict: ${r.target} is ready for KHO scenarios`);
  else lines.push(...r.problems.map((p) => `verdict: not ready: ${p.sentence}`));
  return lines.join("\n");
}

/** The report as JSON: the config as an object keyed by full CONFIG_ names. */
export function targetReportToJson(r: TargetReport): Record<string, unknown> {
  return {
    ...r,
    arch: r.arch ?? null,
    configSource: r.configSource ?? null,
    console: r.console ?? null,
    config: r.config ? Object.fromEntries([...r.config].map(([k, v]) => [`CONFIG_${k}`, v])) : null,
  };
}
