// Installs missing host packages with apt. On Debian stable, packages marked preferBackports
// (QEMU) come from <codename>-backports through a private apt configuration, so the system's
// sources stay as they are.
import { readFile } from "node:fs/promises";
import { execa } from "execa";
import { DEBIAN_MIRROR, PrivateApt } from "../apt.js";
import { HarnessError } from "../errors.js";
import type { Logger } from "../util/log.js";
import type { HostTool } from "./tools.js";

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
