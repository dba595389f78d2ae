// Installs missing host packages with apt. On Debian stable, packages marked preferBackports
// (QEMU) come from <codename>-backports through a private apt configuration, so the system's
// sources stay as they are.
import { readFile } from "node:fs/promises";
import { execa } from "execa";
import { DEBIAN_MIRROR, PrivateApt } from "../debian/apt.js";
import { HarnessError } from "../errors.js";
import type { Logger } from "../util/log.js";
import { HOST_TOOLS, probeTools, type HostTool, type ToolStatus } from "./tools.js";

export interface InstallPlan {
  readonly plain: string[];
  readonly backports: string[];
  /** e.g. "bookworm-backports", when this host is Debian and the suite exists. */
  readonly backportsSuite: string | undefined;
}

async function osRelease(): Promise<Record<string, string>> {
  const text = await readFile("/etc/os-release", "utf8").catch(() => "");
  return Object.fromEntries(
    text
      .split("\n")
      .map((l) => /^([A-Z_]+)=(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1] as string, (m[2] ?? "").replace(/^"|"$/g, "")]),
  );
}

export async function planInstall(
  missing: readonly HostTool[],
  osInfo?: Record<string, string | undefined>,
): Promise<InstallPlan> {
  const os = osInfo ?? (await osRelease());
  const codename = os.VERSION_CODENAME;
  const backportsSuite =
    os.ID === "debian" && codename && codename !== "sid" ? `${codename}-backports` : undefined;
  const pkgs = (pred: (t: HostTool) => boolean) => [...new Set(missing.filter(pred).map((t) => t.pkg))];
  return {
    plain: pkgs((t) => !(t.preferBackports && backportsSuite)),
    backports: pkgs((t) => Boolean(t.preferBackports && backportsSuite)),
    backportsSuite,
  };
}

/** The shell commands a user without root would run for the same result. */
export function installCommands(plan: InstallPlan): string[] {
  const cmds: string[] = [];
  if (plan.plain.length) cmds.push(`apt-get update && apt-get install -y ${plan.plain.join(" ")}`);
  if (plan.backports.length && plan.backportsSuite) {
    cmds.push(
      `echo 'deb ${DEBIAN_MIRROR} ${plan.backportsSuite} main' > /etc/apt/sources.list.d/backports.list && apt-get update && apt-get install -y -t ${plan.backportsSuite} ${plan.backports.join(" ")}`,
    );
  }
  return cmds;
}

async function aptGet(args: string[], log: Logger): Promise<void> {
  log(`# apt-get ${args.join(" ")}`);
  const r = await execa("apt-get", args, {
    reject: false,
    all: true,
    env: { DEBIAN_FRONTEND: "noninteractive" },
  });
  if (r.exitCode !== 0) {
    throw new HarnessError(
      `apt-get ${args.join(" ")} failed`,
      (r.all ?? "").trimEnd().split("\n").slice(-15),
    );
  }
}

export async function runInstall(plan: InstallPlan, log: Logger): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new HarnessError(
      "installing host packages needs root; run as root, or run these commands:",
      installCommands(plan),
    );
  }
  if (plan.plain.length) {
    await aptGet(["-q", "update"], log);
    await aptGet(["-q", "install", "-y", "--no-install-recommends", ...plan.plain], log);
  }
  if (plan.backports.length && plan.backportsSuite) {
    const codename = plan.backportsSuite.replace(/-backports$/, "");
    const apt = new PrivateApt(
      {
        name: `host-${codename}`,
        suites: [codename, `${codename}-updates`, plan.backportsSuite],
        architectures: [await hostDebianArch()],
      },
      log,
    );
    await apt.ensureLists();
    // Same private lists for the install, plus the host's real dpkg status so apt resolves
    // against what is installed.
    const o = (k: string, v: string) => ["-o", `${k}=${v}`];
    await aptGet(
      [
        ...o("Dir::Etc::sourcelist", `${apt.dir}/sources.list`),
        ...o("Dir::Etc::sourceparts", "-"),
        ...o("Dir::State::Lists", `${apt.dir}/lists`),
        "-q",
        "install",
        "-y",
        "--no-install-recommends",
        "-t",
        plan.backportsSuite,
        ...plan.backports,
      ],
      log,
    );
  }
}

async function hostDebianArch(): Promise<string> {
  const r = await execa("dpkg", ["--print-architecture"], { reject: false });
  return r.stdout.trim() || "amd64";
}

/**
 * What `kho run`, `kho test` and the other guest-booting commands do first: every required host
 * tool is probed; as root the missing ones are installed (as `kho doctor --install` does, with
 * its progress lines), otherwise the command stops before any scenario with one sentence naming
 * what is missing and the commands that install it (exit 2).
 */
export async function ensureHostTools(
  log: Logger,
  forWhat: string,
  deps: {
    probe?: () => Promise<ToolStatus[]>;
    install?: (plan: InstallPlan, log: Logger) => Promise<void>;
    isRoot?: boolean;
  } = {},
): Promise<void> {
  const probe = deps.probe ?? (() => probeTools(HOST_TOOLS));
  const missingOf = (s: ToolStatus[]) =>
    s.filter((x) => x.version === undefined && !x.tool.optional).map((x) => x.tool);
  const missing = missingOf(await probe());
  if (missing.length === 0) return;
  const plan = await planInstall(missing);
  const names = missing.map((t) => t.id).join(", ");
  if (!(deps.isRoot ?? process.getuid?.() === 0)) {
    throw new HarnessError(
      `${forWhat} needs host tools missing on this host (${names}): run 'kho doctor --install' as root, or these commands:`,
      installCommands(plan),
      2,
    );
  }
  log(`# ${forWhat} needs ${names}: installing (kho doctor --install)`);
  const started = performance.now();
  await (deps.install ?? runInstall)(plan, log);
  const still = missingOf(await probe());
  if (still.length > 0)
    throw new HarnessError(
      `installing ${names} left ${still.map((t) => t.id).join(", ")} missing`,
      installCommands(plan),
      2,
    );
  log(`# host tools installed in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}
