// What the host-side memory analysis needs of a scenario: its guest (commands, the QEMU process
// whose RAM it reads, work at the kexec pause) and where its artifacts go. A ScenarioContext is
// one; nothing here knows scenarios or the runner.
import type { GuestSession } from "../session/session.js";

export interface MemoryScope {
  readonly guest: Pick<GuestSession, "run" | "machine" | "atNextHandover">;
  readonly artifactsDir: string;
  artifact(name: string, data: string | Uint8Array): Promise<string>;
}
