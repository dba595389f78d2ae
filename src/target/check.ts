// `kho target check`: a machine reached only over SSH (a lab server, not a guest the harness
// started), looked at before anything runs on it. Reached with the user's key and a host key
// the user pinned (known_hosts), never a key the harness makes or installs; refused unless the
// machine carries the marker file, because the scenarios kexec it; then its running kernel is
// read as `kho kernel inspect` reads an image (/proc/config.gz, else /boot/config-RELEASE) and
// what the harness could and could not check there is listed.
import { gunzipSync } from "node:zlib";
import { isArchName, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { parseConfig, type ConfigMap } from "../kernel/config.js";
import { readinessOf, type ReadinessRow } from "../kernel/inspect.js";
import { scaled } from "../util/deadline.js";
import type { SshLink } from "../vm/ssh.js";
import { probeConsole, type ConsoleProbe } from "./console-probe.js";
import { assertMarker, connectTarget, type TargetLoginOptions } from "./login.js";
import { describeTarget } from "./url.js";

export interface TargetCheckOptions extends TargetLoginOptions {
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

/** Reaches the target, checks the marker, reads its kernel: the whole `kho target check`. */
export async function checkTarget(opts: TargetCheckOptions): Promise<TargetReport> {
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
    const probe = opts.consoleCmd === undefined ? undefined : await probeConsole(link, opts.consoleCmd);
    if (probe && !probe.seen)
      problems.push({
        sentence: `the console command did not show the line the harness wrote to ${target}'s /dev/kmsg within ${Math.round(probe.ms / 1000)}s (${plural(probe.writes, "write")}): it is not this machine's console, or it is not connected`,
        evidence: [`--console-cmd ${probe.command}`, ...probe.tail.map((l) => `console: ${l}`)],
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
      console: probe,
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
