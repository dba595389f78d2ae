// HandoverPause: work that must run with the guest paused between the old kernel's last words
// and the new kernel's boot.
import { describe, expect, it } from "vitest";
import { HandoverPause } from "../../src/session/handover-pause.js";
import type { ConsoleLine } from "../../src/vm/console.js";
import type { Vm } from "../../src/vm/qemu.js";

/** A VM with a console the test prints to and a QMP that logs stop/cont. */
function fakeVm() {
  const lines: ConsoleLine[] = [];
  const listeners = new Set<(l: ConsoleLine) => void>();
  const log: string[] = [];
  const vm = {
    console: {
      entriesSince: (seq: number) => lines.filter((l) => l.seq >= seq),
      onLine: (fn: (l: ConsoleLine) => void) => (listeners.add(fn), () => listeners.delete(fn)),
    },
    qmp: {
      stop: () => (log.push("stop"), Promise.resolve()),
      cont: () => (log.push("cont"), Promise.resolve()),
    },
  };
  const print = (text: string) => {
    const line = { seq: lines.length, boot: 1, text, at: 0 };
    lines.push(line);
    for (const l of [...listeners]) l(line);
  };
  return { vm: vm as unknown as Vm, print, log, mark: () => lines.length };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("HandoverPause", () => {
  it("runs the work with the guest stopped once the old kernel starts the new one, once per key", async () => {
    const { vm, print, log, mark } = fakeVm();
    const pause = new HandoverPause();
    let runs = 0;
    const work = () => (log.push("work"), runs++, Promise.resolve("state"));
    const a = pause.add("k", work);
    const b = pause.add("k", work);
    const c = pause.add("other", () => Promise.resolve(7));
    await pause.arm(vm, mark(), new AbortController().signal);
    print("reboot: Restarting system");
    await tick();
    expect(log).toEqual([]);
    print("[    3.9] kexec_core: Starting new kernel");
    const [ra, rb, rc] = await Promise.all([a, b, c]);
    expect(runs).toBe(1);
    expect(log).toEqual(["stop", "work", "cont"]);
    expect(ra).toMatchObject({ kind: "read", value: "state", late: false });
    expect(rb).toMatchObject({ kind: "read", value: "state" });
    expect(rc).toMatchObject({ kind: "read", value: 7 });
  });

  it("says it came late when the new kernel's banner was out before the stop", async () => {
    const { vm, print, mark } = fakeVm();
    const pause = new HandoverPause();
    const since = mark();
    print("kexec_core: Starting new kernel");
    print("Linux version 7.2.13 (root@host) #1 SMP");
    const r = pause.add("k", () => Promise.resolve(1));
    await pause.arm(vm, since, new AbortController().signal);
    expect(await r).toMatchObject({ kind: "read", late: true });
  });

  it("says missed when the kexec ends without a handover, failed when the work fails (and still continues the guest)", async () => {
    const { vm, print, log, mark } = fakeVm();
    const pause = new HandoverPause();
    const done = new AbortController();
    const never = pause.add("k", () => Promise.resolve(1));
    await pause.arm(vm, mark(), done.signal);
    done.abort();
    expect(await never).toMatchObject({ kind: "missed" });
    print("kexec_core: Starting new kernel");
    await tick();
    expect(log).toEqual([]); // nothing armed any more

    const failing = pause.add("k", () => Promise.reject(new Error("read failed")));
    await pause.arm(vm, mark(), new AbortController().signal);
    print("kexec_core: Starting new kernel");
    expect(await failing).toEqual({
      kind: "failed",
      detail: "the read at the kexec pause failed: read failed",
    });
    expect(log).toEqual(["stop", "cont"]);
  });

  it("work added after a kexec was armed waits for the next one", async () => {
    const { vm, print, log, mark } = fakeVm();
    const pause = new HandoverPause();
    await pause.arm(vm, mark(), new AbortController().signal);
    const later = pause.add("k", () => Promise.resolve(2));
    print("kexec_core: Starting new kernel");
    await tick();
    expect(log).toEqual([]);
    await pause.arm(vm, mark(), new AbortController().signal);
    print("kexec_core: Starting new kernel");
    expect(await later).toMatchObject({ kind: "read", value: 2 });
  });
});
