// Whether the host can read the guest's memory: through QEMU for a guest the harness started,
// not at all on a machine target (kho run --target), where scenarios record each check that needs
// it as not done ("not-on-target", scenarios/memfd-common.ts) or are skipped (Scenario.needsQemu).
import { HarnessError } from "../errors.js";
import type { GuestMachine } from "../session/session.js";

/** Why a machine target gives the host no memory to read (the report's not-done detail). */
export const NO_HOST_MEMORY =
  "a machine target has no QEMU for the host to read its memory through or to pause it at the kexec";

/**
 * The QEMU process, where the code that reads guest memory cannot do without it: scenarios that
 * reach such code declare that they need a guest the harness starts (Scenario.needsQemu), so
 * a machine target here is the harness's own mistake.
 */
export function requireHostMemory(guest: { readonly machine: GuestMachine | undefined }): GuestMachine {
  if (guest.machine) return guest.machine;
  throw new HarnessError(
    "harness bug: guest memory was asked of a machine target; the scenario should declare needsQemu",
  );
}
