// Facts a run report records besides the results: QEMU's version per arch, the host, and a
// config hash that identifies a kernel's configuration whatever file it was read from.
import { readFile } from "node:fs/promises";
import { cpus, hostname, release, totalmem, type } from "node:os";
import { execa } from "execa";
import { archSpec, type ArchName } from "../arch.js";
import { readHostFacts } from "../host/facts.js";
import { sha256 } from "../util/hash.js";
import type { HostInfo, QemuInfo } from "./schema.js";

/** "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)" -> "10.0.2". */
export function parseQemuVersion(banner: string): string | null {
  return /\bversion\s+(\d+\.\d+(?:\.\d+)?)/i.exec(banner)?.[1] ?? null;
}

/** Asks `qemu-system-<arch> --version` once; null version when the binary does not answer. */
export async function qemuVersion(arch: ArchName): Promise<QemuInfo> {
  const binary = archSpec(arch).qemuBinary;
  const r = await execa(binary, ["--version"], { reject: false, timeout: 10_000 });
  const banner = r.failed
    ? undefined
    : String(r.stdout)
        .split("\n")
        .find((l) => l.trim());
  return banner
    ? { binary, version: parseQemuVersion(banner), banner: banner.trim() }
    : { binary, version: null, banner: null };
}

/**
 * sha256 of a parsed config: one `CONFIG_NAME=value` line per option, sorted by name, unset
 * options as `=n`. The same configuration gives the same hash from IKCONFIG or from .config.
 */
export function configSha256(config: ReadonlyMap<string, string>): string {
  const lines = [...config].map(([k, v]) => `CONFIG_${k}=${v}\n`).sort();
  return sha256(lines.join(""));
}

async function cpuModel(): Promise<string | null> {
  const fromNode = cpus()[0]?.model.trim();
  if (fromNode) return fromNode;
  // arm64 /proc/cpuinfo has no "model name"; Node then reports an empty model.
  const text = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  return /^(?:model name|Hardware|CPU part)\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? null;
}

export async function hostInfo(): Promise<HostInfo> {
  const facts = await readHostFacts();
  return {
    hostname: hostname(),
    os: `${type()} ${release()}`,
    cpuArch: process.arch,
    cpuModel: await cpuModel(),
    cpus: cpus().length,
    memoryMiB: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    kvm: facts.kvm ?? {},
  };
}
