// Facts about this host that are slow to learn (the KVM probe), remembered between runs.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { cachePaths } from "../paths.js";

export interface KvmVerdict {
  readonly usable: boolean;
  /** Why not, in a few words ("/dev/kvm missing", "guest did not answer within 5s"...). */
  readonly reason?: string;
  readonly probedAt: string;
}

export interface HostFacts {
  kvm?: Partial<Record<string, KvmVerdict>>;
}

export async function readHostFacts(): Promise<HostFacts> {
  try {
    return JSON.parse(await readFile(cachePaths.hostFacts(), "utf8")) as HostFacts;
  } catch {
    return {};
  }
}

export async function writeHostFacts(facts: HostFacts): Promise<void> {
  await mkdir(dirname(cachePaths.hostFacts()), { recursive: true });
  await writeFile(cachePaths.hostFacts(), JSON.stringify(facts, null, 2) + "\n");
}
