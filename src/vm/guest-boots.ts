// Following one guest across kexecs over SSH: every connection reads the boot's boot_id, so the
// harness knows which kernel answered, and a reconnect ignores the old kernel's sshd.
import { setTimeout as sleep } from "node:timers/promises";
import { connectSsh, SshFailure, type SshLink, type SshLogin, type SshTarget } from "./ssh.js";
import { scaled } from "../util/deadline.js";

export interface BootConnection {
  readonly link: SshLink;
  readonly bootId: string;
  /** How many distinct boots this guest has shown (1 = first kernel, 2 = after one kexec). */
  readonly boot: number;
}

/**
 * Follows one guest across kexecs: every connection reads boot_id, so the harness knows which
 * kernel answered, and a reconnect ignores the old kernel's sshd still answering.
 */
export class GuestBoots {
  private readonly ids: string[] = [];

  constructor(private readonly opts: SshTarget & SshLogin) {}

  get bootIds(): readonly string[] {
    return this.ids;
  }

  /**
   * Connects to whichever boot answers. `knownBootId` is the boot id the guest already told
   * (its console's ready line): it spares an SSH command, ~0.1-0.2 s under TCG.
   */
  /** `deadlineMs` is scaled by the timeout factor (src/util/deadline.ts). */
  async connect(deadlineMs: number, knownBootId?: string, signal?: AbortSignal): Promise<BootConnection> {
    return this.connectScaled(scaled(deadlineMs), knownBootId, signal);
  }

  private async connectScaled(
    deadlineMs: number,
    knownBootId?: string,
    signal?: AbortSignal,
  ): Promise<BootConnection> {
    const link = await connectSsh({ ...this.opts, deadlineMs, ...(signal ? { signal } : {}) });
    return this.record(link, knownBootId ?? (await link.bootId()));
  }

  /**
   * After a kexec (or reboot): retries until a boot not seen before answers. With `knownBootId`
   * (the new boot's ready line was seen, so the old kernel is gone) the first link is the one,
   * unless the id is not new: then no kexec happened.
   */
  async reconnect(given: number, knownBootId?: string, signal?: AbortSignal): Promise<BootConnection> {
    const deadlineMs = scaled(given);
    const end = Date.now() + deadlineMs;
    const previous = this.ids.at(-1);
    if (knownBootId !== undefined && knownBootId !== previous)
      return this.connectScaled(deadlineMs, knownBootId, signal);
    for (;;) {
      const remaining = end - Date.now();
      const link = await connectSsh({
        ...this.opts,
        deadlineMs: Math.max(remaining, 0),
        ...(signal ? { signal } : {}),
      });
      // Without the new boot's ready line (a machine target has no console to read it from), the
      // old kernel's sshd may accept and then die under the question: ask again.
      const id = await link.bootId().catch((err: unknown) => {
        if (err instanceof SshFailure && err.kind === "lost" && Date.now() + 500 < end) return undefined;
        throw err;
      });
      if (id !== undefined && id !== previous) return this.record(link, id);
      await link.close().catch(() => undefined);
      if (id === undefined) {
        await sleep(500, undefined, signal ? { signal } : {});
        continue;
      }
      if (Date.now() + 500 >= end) {
        throw new SshFailure(
          "timeout",
          `the guest still runs the previous kernel after ${deadlineMs / 1000}s`,
          [`boot_id ${id} did not change: the kexec did not happen`],
        );
      }
      await sleep(500, undefined, signal ? { signal } : {});
    }
  }

  private record(link: SshLink, bootId: string): BootConnection {
    if (!this.ids.includes(bootId)) this.ids.push(bootId);
    return { link, bootId, boot: this.ids.indexOf(bootId) + 1 };
  }
}
