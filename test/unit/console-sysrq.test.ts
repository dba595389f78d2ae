// The panic fault of test/e2e/faults.test.ts without a VM: the consoles of real guests of both
// arches (the harness's 7.2 kernels under TCG) that got `echo c > /proc/sysrq-trigger` over SSH,
// replayed into the console watchdog while a step waits on the guest.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { GuestConsole } from "../../src/vm/console.js";
import { GuestFault } from "../../src/vm/fault.js";

const READY = "KHO-GUEST: ready boot_id=";

/** Feeds `bytes` in uneven chunks, as a pipe delivers them. */
function replay(c: GuestConsole, bytes: Buffer): void {
  for (let at = 0, n = 1; at < bytes.length; at += n, n = (n * 7 + 13) % 997)
    c.feed(bytes.subarray(at, at + n));
}

describe.each(["x86_64", "arm64"])("a recorded %s guest crashed through sysrq", (arch) => {
  const raw = readFileSync(fileURLToPath(new URL(`../fixtures/vm/${arch}-sysrq-panic.log`, import.meta.url)));
  const cut = raw.indexOf(READY);
  const upToReady = raw.subarray(0, raw.indexOf("\n", cut) + 1);
  const rest = raw.subarray(upToReady.length);

  it("fails the running step as a panic, with the sysrq line and the trace in the excerpt", async () => {
    const c = new GuestConsole({ settleMs: 10 });
    replay(c, upToReady);
    // The SSH command that wrote to sysrq-trigger never returns: only the watchdog ends it.
    const step = c.watch(new Promise<never>(() => undefined), { step: "echo", deadlineMs: 5_000 });
    replay(c, rest);
    c.end("QEMU exited with code 0"); // panic=-1 and -no-reboot: QEMU exits right after
    const err: unknown = await step.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestFault);
    const f = err as GuestFault;
    expect(f.kind).toBe("panic");
    expect(f.boot).toBe(1);
    expect(f.message).toBe(
      "the guest kernel panicked (during echo, boot 1): Kernel panic - not syncing: sysrq triggered crash",
    );
    expect(f.excerpt.some((l) => /sysrq: Trigger a crash/.test(l))).toBe(true);
    expect(f.excerpt.some((l) => /write_sysrq_trigger/.test(l))).toBe(true);
    expect(f.excerpt.some((l) => l.startsWith(READY))).toBe(true); // the context before it
  });

  it("is not a fault before the crash: the boot up to the ready line is clean", async () => {
    const c = new GuestConsole({ settleMs: 10 });
    // A partial line counts for waitFor: ask for the whole id.
    const ready = c.waitFor(/KHO-GUEST: ready boot_id=[0-9a-f-]{36}/, { deadlineMs: 1_000, step: "boot" });
    replay(c, upToReady);
    expect((await ready).line.text).toMatch(/^KHO-GUEST: ready boot_id=[0-9a-f-]{36}$/);
  });
});
