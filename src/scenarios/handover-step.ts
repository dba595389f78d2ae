// The host's decoding of a handover inside a scenario: in/fdt from the new kernel decoded against
// what was kept of the old kernel's memory (memory/handover.ts), its findings recorded
// (checks/handover.ts), and the checks that need the pause at the kexec recorded as not done
// when the pause gave nothing.
import type { ScenarioContext } from "../api/context.js";
import { atKexecNotDone, handoverFindings } from "../checks/handover.js";
import {
  decodeHandover,
  type ClaimedRange,
  type HandoverReport,
  type PreKexecMemory,
} from "../memory/handover.js";

export interface HandoverStep {
  /** in/fdt as the agent's --kho-state gave it; read over SSH when absent. */
  readonly inFdt?: Uint8Array;
  /** false when the claims are frames that must NOT be in the map (the scenario checks that). */
  readonly claimsPreserved?: boolean;
}

/** Decodes and checks the handover; `report.notDone` says why the at-kexec checks were not done. */
export async function checkDecodedHandover(
  ctx: ScenarioContext,
  before: PreKexecMemory,
  claims: readonly ClaimedRange[],
  step: HandoverStep = {},
): Promise<HandoverReport & { readonly notDone: ReturnType<typeof atKexecNotDone> }> {
  const inFdt = step.inFdt ?? (await ctx.guest.readFile("/sys/kernel/debug/kho/in/fdt"));
  const report = await decodeHandover(ctx, inFdt, before, claims);
  const findings = handoverFindings(report);
  ctx.expect(
    step.claimsPreserved === false ? findings.filter((f) => f.check !== "handover.frames-in-map") : findings,
  );
  const notDone = atKexecNotDone(report);
  if (notDone) ctx.notDone("handover.fdt-at-kexec", notDone.reason, notDone.detail);
  return { ...report, notDone };
}
