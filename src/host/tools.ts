// Every host tool the harness needs, how to see its version, and the Debian package that
// provides it. `kho doctor` lists them; each step checks the ones it uses before starting.
import { access } from "node:fs/promises";
import { execa } from "execa";
import { ARCH_NAMES, archSpec } from "../arch.js";
import { HarnessError } from "../errors.js";

export type ToolPurpose = "kernel build" | "guest image" | "boot" | "apt" | "inspect";

export interface HostTool {
  readonly id: string;
  readonly purpose: ToolPurpose;
  readonly pkg: string;
  /** A command to run for its version, or a file that must exist (headers, static libc). */
  readonly probe: { readonly cmd: string; readonly args: readonly string[] } | { readonly file: string };
  /** Packages that come from the newest suite (backports) when the host is Debian stable. */
  readonly preferBackports?: boolean;
  readonly optional?: boolean;
}

const cmd = (name: string, ...args: string[]) => ({ cmd: name, args: args.length ? args : ["--version"] });

export const HOST_TOOLS: readonly HostTool[] = [
  ...ARCH_NAMES.map((a): HostTool => ({
    id: archSpec(a).qemuBinary,
    purpose: "boot",
    pkg: archSpec(a).qemuPackage,
    probe: cmd(archSpec(a).qemuBinary),
    preferBackports: true,
  })),
  { id: "gcc", purpose: "kernel build", pkg: "gcc", probe: cmd("gcc") },
  ...ARCH_NAMES.filter((a) => archSpec(a).crossCompile !== "").map((a): HostTool => ({
    id: `${archSpec(a).crossCompile}gcc`,
    purpose: "kernel build",
    pkg: archSpec(a).compilerPackage,
    probe: cmd(`${archSpec(a).crossCompile}gcc`),
  })),
  ...ARCH_NAMES.filter((a) => archSpec(a).crossCompile !== "").map((a): HostTool => ({
    id: `${archSpec(a).crossCompile}libc (static)`,
    purpose: "guest image",
    pkg: `libc6-dev-${archSpec(a).debianArch}-cross`,
    probe: { file: `/usr/${archSpec(a).crossCompile.slice(0, -1)}/lib/libc.a` },
  })),
  {
    id: "libc (static)",
    purpose: "guest image",
    pkg: "libc6-dev",
    probe: { file: "/usr/lib/x86_64-linux-gnu/libc.a" },
  },
  { id: "make", purpose: "kernel build", pkg: "make", probe: cmd("make") },
  { id: "flex", purpose: "kernel build", pkg: "flex", probe: cmd("flex") },
  { id: "bison", purpose: "kernel build", pkg: "bison", probe: cmd("bison") },
  { id: "bc", purpose: "kernel build", pkg: "bc", probe: cmd("bc") },
  { id: "perl", purpose: "kernel build", pkg: "perl", probe: cmd("perl", "-e", "print $^V") },
  {
    id: "libelf headers",
    purpose: "kernel build",
    pkg: "libelf-dev",
    probe: { file: "/usr/include/gelf.h" },
  },
  {
    id: "libssl headers",
    purpose: "kernel build",
    pkg: "libssl-dev",
    probe: { file: "/usr/include/openssl/ssl.h" },
  },
  { id: "rsync", purpose: "kernel build", pkg: "rsync", probe: cmd("rsync") },
  { id: "patch", purpose: "kernel build", pkg: "patch", probe: cmd("patch", "--version") },
  { id: "xz", purpose: "kernel build", pkg: "xz-utils", probe: cmd("xz") },
  { id: "cpio", purpose: "kernel build", pkg: "cpio", probe: cmd("cpio") },
  { id: "mke2fs", purpose: "boot", pkg: "e2fsprogs", probe: cmd("mke2fs", "-V") },
  // QEMU runs under `setpriv --pdeathsig SIGKILL`: the kernel kills it if the harness is killed
  { id: "setpriv", purpose: "boot", pkg: "util-linux", probe: cmd("setpriv") },
  { id: "kmod", purpose: "kernel build", pkg: "kmod", probe: cmd("depmod", "--version") },
  { id: "apt-get", purpose: "apt", pkg: "apt", probe: cmd("apt-get") },
  { id: "dpkg-deb", purpose: "apt", pkg: "dpkg", probe: cmd("dpkg-deb") },
  {
    id: "debian-archive-keyring",
    purpose: "apt",
    pkg: "debian-archive-keyring",
    probe: { file: "/usr/share/keyrings/debian-archive-keyring.gpg" },
  },
  { id: "dtc", purpose: "inspect", pkg: "device-tree-compiler", probe: cmd("dtc"), optional: true },
];

export interface ToolStatus {
  readonly tool: HostTool;
  /** The first line the tool printed of its version, "present" for files, undefined when missing. */
  readonly version: string | undefined;
}

export async function probeTool(tool: HostTool): Promise<ToolStatus> {
  if ("file" in tool.probe) {
    const ok = await access(tool.probe.file).then(
      () => true,
      () => false,
    );
    return { tool, version: ok ? "present" : undefined };
  }
  const r = await execa(tool.probe.cmd, [...tool.probe.args], { reject: false, timeout: 10_000, all: true });
  if (r.failed && (r.code === "ENOENT" || r.exitCode === undefined)) return { tool, version: undefined };
  const first = (r.all ?? "").split("\n").find((l) => l.trim()) ?? "present";
  return { tool, version: first.trim().slice(0, 80) };
}

export async function probeTools(tools: readonly HostTool[] = HOST_TOOLS): Promise<ToolStatus[]> {
  return Promise.all(tools.map(probeTool));
}

/** Fails with one sentence naming what is missing and the command that installs it. */
export async function requireTools(ids: readonly string[], forWhat: string): Promise<void> {
  const tools = ids.map((id) => {
    const t = HOST_TOOLS.find((x) => x.id === id);
    if (!t) throw new Error(`unknown host tool ${id}`);
    return t;
  });
  const missing = (await probeTools(tools)).filter((s) => s.version === undefined).map((s) => s.tool);
  if (missing.length === 0) return;
  throw new HarnessError(
    `${forWhat} needs ${missing.map((t) => t.id).join(", ")}, missing on this host: run 'kho doctor --install' (as root) or 'apt-get install ${[...new Set(missing.map((t) => t.pkg))].join(" ")}'`,
  );
}
