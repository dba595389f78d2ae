// KVM is used only when a probe guest really ran under it: /dev/kvm can exist and still hang
// guests. The verdict is remembered in the cache so later steps pick TCG by themselves.
import { ARCH_NAMES, type ArchName } from "../arch.js";
import type { Logger } from "../util/log.js";
import { probeKvm } from "../vm/qemu.js";
import { readHostFacts, writeHostFacts, type KvmVerdict } from "./facts.js";

const PROBE_DEADLINE_MS = 5_000;
/** A verdict older than this is probed again (a host's KVM setup changes rarely). */
const MAX_AGE_MS = 7 * 24 * 3600_000;

export async function probeAndRememberKvm(log: Logger): Promise<Record<ArchName, KvmVerdict>> {
  const facts = await readHostFacts();
  const out = {} as Record<ArchName, KvmVerdict>;
  for (const arch of ARCH_NAMES) {
    log(`# probing KVM for ${arch} (deadline ${PROBE_DEADLINE_MS / 1000}s)`);
    const r = await probeKvm(arch, PROBE_DEADLINE_MS);
    out[arch] = {
      usable: r.usable,
      ...(r.usable ? {} : { reason: r.reason }),
      probedAt: new Date().toISOString(),
    };
  }
  await writeHostFacts({ ...facts, kvm: out });
  return out;
}

/** The accelerator to boot `arch` with: KVM only after a successful probe. KHO_ACCEL overrides. */
export async function chooseAccel(
  arch: ArchName,
  log: Logger,
): Promise<{ accel: "kvm" | "tcg"; why: string }> {
  const forced = process.env.KHO_ACCEL;
  const facts = await readHostFacts();
  if (forced === "tcg") return { accel: forced, why: "KHO_ACCEL=tcg" };
  if (forced === "kvm") {
    // Forcing is allowed (a probe can be wrong), but a guest that then hangs should say why.
    const known = facts.kvm?.[arch];
    const doubt =
      known && !known.usable ? `, although the KVM probe found it unusable: ${known.reason ?? "?"}` : "";
    return { accel: forced, why: `forced by KHO_ACCEL=kvm${doubt}` };
  }
  let verdict = facts.kvm?.[arch];
  if (!verdict || Date.now() - Date.parse(verdict.probedAt) > MAX_AGE_MS) {
    verdict = (await probeAndRememberKvm(log))[arch];
  }
  return verdict.usable
    ? { accel: "kvm", why: "KVM probe passed" }
    : { accel: "tcg", why: `KVM unusable: ${verdict.reason ?? "unknown"}` };
}
