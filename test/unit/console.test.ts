import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { GuestConsole } from "../../src/vm/console.js";
import { classifyLine, GuestFault, type GuestFaultKind } from "../../src/vm/fault.js";

// Lines as a 7.2 x86_64 guest prints them on ttyS0 (trimmed), including a kexec into a second kernel.
const BOOT1 = [
  "[    0.000000] Linux version 7.2.13 (root@builder) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC",
  "[    0.000000] Command line: console=ttyS0 kho=on liveupdate=on panic=-1",
  "[    0.000000] KHO: Using scratch at 0x3c000000, size 0x4000000",
  "[    0.412345] Kernel command line: console=ttyS0 kho=on liveupdate=on panic=-1 failslab=1",
  "[    1.234567] Run /init as init process",
  "guest-agent: ready",
];
const KEXEC = ["[   12.000000] kexec_core: Starting new kernel"];
const BOOT2 = [
  "[    0.000000] Linux version 7.2.13 (root@builder) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC",
  "[    0.000000] KHO: exec from: 7.2.13 (count 1)",
  "[    0.812000] test_kho: KHO restore succeeded",
];

const FAULT_LINES: [GuestFaultKind, string][] = [
  ["panic", "[    2.100000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"],
  ["panic", "[    9.000000] Kernel panic - not syncing: Oops - BUG: Fatal exception"],
  [
    "oops",
    "[    5.000000] Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP",
  ],
  ["oops", "[    5.000000] Internal error: Oops: 0000000096000005 [#1] PREEMPT SMP"],
  ["bug", "[    5.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008"],
  ["bug", "[    5.000000] kernel BUG at mm/page_alloc.c:1234!"],
  [
    "warning",
    "[    5.000000] WARNING: CPU: 1 PID: 77 at kernel/liveupdate/luo_core.c:88 luo_prepare+0x1/0x2",
  ],
  ["bad-page", "[    5.000000] BUG: Bad page state in process kexec  pfn:12345"],
  ["kho-failure", "[    0.300000] KHO: failed to restore preserved memory: -22"],
  ["kho-failure", "[    0.900000] test_kho: KHO restore failed"],
  ["hung-task", "[  243.000000] INFO: task kworker/0:1:15 blocked for more than 120 seconds."],
  // seen on an arm64 guest whose virtio-net TX livelocked (see README, Faults)
  ["stall", "[   25.931322] rcu: INFO: rcu_preempt self-detected stall on CPU"],
  ["stall", "[   25.931322] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"],
  ["stall", "[   25.931322] rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: {"],
  ["stall", "[   48.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [ksoftirqd/0:14]"],
  ["stall", "[   48.000000] Watchdog detected hard LOCKUP on cpu 1"],
  // the debug variant's detectors, as their report headers read (mm/kasan/report.c, mm/kfence,
  // lib/ubsan.c, kernel/locking/lockdep.c, lib/debugobjects.c, lib/list_debug.c)
  ["debug-report", "[   7.1] BUG: KASAN: slab-use-after-free in luo_file_finish+0x64/0x1a0"],
  ["debug-report", "[   7.1] BUG: KFENCE: use-after-free read in luo_session_release+0x30/0x90"],
  ["debug-report", "[   7.1] UBSAN: array-index-out-of-bounds in kernel/liveupdate/luo_session.c:210:14"],
  ["debug-report", "[   7.1] WARNING: possible circular locking dependency detected"],
  ["debug-report", "[   7.1] WARNING: possible recursive locking detected"],
  ["debug-report", "[   7.1] WARNING: inconsistent lock state"],
  ["debug-report", "[   7.1] WARNING: suspicious RCU usage"],
  ["debug-report", "[   7.1] BUG: sleeping function called from invalid context at mm/slub.c:4000"],
  [
    "debug-report",
    "[   7.1] ODEBUG: free active (active state 0) object: 00000000a1b2c3d4 object type: timer_list",
  ],
  [
    "debug-report",
    "[   7.1] list_add corruption. prev->next should be next (ffff888003a1b2c8), but was 0000000000000000.",
  ],
  ["debug-report", "[   7.1] list_del corruption, ffff888003a1b2c8->next is LIST_POISON1 (dead000000000100)"],
];

function feedLines(c: GuestConsole, lines: readonly string[]): void {
  c.feed(lines.map((l) => `${l}\r\n`).join(""));
}

/** The settled state of a promise, for steps that must (not) have failed yet. */
async function state(p: Promise<unknown>): Promise<"pending" | "resolved" | "rejected"> {
  const marker = Symbol("pending");
  try {
    const v = await Promise.race([p, Promise.resolve(marker)]);
    return v === marker ? "pending" : "resolved";
  } catch {
    return "rejected";
  }
}

async function faultOf(p: Promise<unknown>): Promise<GuestFault> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GuestFault);
  return err as GuestFault;
}

describe("classifyLine", () => {
  it.each(FAULT_LINES)("sees %s in %s", (kind, line) => expect(classifyLine(line)).toBe(kind));

  it("ignores healthy lines and echoed command lines", () => {
    for (const line of [...BOOT1, ...KEXEC, ...BOOT2]) expect(classifyLine(line)).toBeUndefined();
  });
});

describe("boot split", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "console-test-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("starts a boot at a second banner or after a kexec, and writes boot-N.log", () => {
    const c = new GuestConsole({ logDir: dir });
    const seen: number[] = [];
    c.onLine((l) => seen.push(l.boot));
    feedLines(c, ["SeaBIOS noise before the kernel", ...BOOT1, ...KEXEC]);
    expect(c.boot).toBe(1);
    // The first line after the kexec starts boot 2, and boot 2's own banner does not start boot 3.
    feedLines(c, ["purgatory: hello", ...BOOT2]);
    expect(c.boot).toBe(2);
    // A reset (no kexec line) is noticed at the next banner.
    feedLines(c, [BOOT1[0] ?? ""]);
    expect(c.boot).toBe(3);
    expect(seen).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3]);
    expect(readFileSync(join(dir, "boot-1.log"), "utf8")).toBe(
      ["SeaBIOS noise before the kernel", ...BOOT1, ...KEXEC].join("\n") + "\n",
    );
    expect(readFileSync(join(dir, "boot-2.log"), "utf8").split("\n")[0]).toBe("purgatory: hello");
    expect(c.bootLog(2)).toBe(join(dir, "boot-2.log"));
  });

  it("joins lines split across chunks, including a split UTF-8 character", () => {
    const c = new GuestConsole();
    const lines: string[] = [];
    c.onLine((l) => lines.push(l.text));
    const bytes = Buffer.from("caf\u00e9 ok\r\nsecond\n");
    c.feed(bytes.subarray(0, 4)); // cuts the 2-byte é in half
    c.feed(bytes.subarray(4, 12));
    c.feed(bytes.subarray(12));
    expect(lines).toEqual(["caf\u00e9 ok", "second"]);
  });
});

describe("waitFor", () => {
  it("finds a line already printed in this boot, or waits for it", async () => {
    const c = new GuestConsole();
    feedLines(c, BOOT1);
    const m = await c.waitFor(/guest-agent: (\w+)/, { deadlineMs: 1000 });
    expect(m.match[1]).toBe("ready");
    expect(m.line.boot).toBe(1);
    const since = c.mark();
    const next = c.waitFor(/guest-agent: ready/, { deadlineMs: 1000, since });
    expect(await state(next)).toBe("pending");
    feedLines(c, ["guest-agent: ready"]);
    expect((await next).line.seq).toBe(since);
  });

  it("ends early when its signal aborts, and the ended wait fails on nothing later", async () => {
    const c = new GuestConsole({ settleMs: 10 });
    const abort = new AbortController();
    const p = c.waitFor(/KHO-GUEST: ready/, { deadlineMs: 200, silenceMs: 100, signal: abort.signal });
    expect(await state(p)).toBe("pending");
    const why = new Error("the guest agent exited (1) when told to kexec");
    abort.abort(why);
    await expect(p).rejects.toBe(why);
    // Its step is closed: neither a later fault nor its deadline fails it again (no unhandled rejection).
    feedLines(c, ["[    5.0] Kernel panic - not syncing: sysrq triggered crash"]);
    await new Promise((r) => setTimeout(r, 250));
    // Each line carries the host time it was complete at.
    const [line] = c.entriesSince(0);
    expect(line?.at).toBeGreaterThan(0);
  });

  it("matches a prompt that has no newline yet", async () => {
    const c = new GuestConsole();
    const p = c.waitFor(/login: $/, { deadlineMs: 1000 });
    c.feed("\r\nkho-guest login: ");
    expect((await p).line.text).toBe("kho-guest login: ");
  });
});

describe("watchdog", () => {
  it.each(FAULT_LINES)("fails the step on %s with the line and its context", async (kind, line) => {
    const c = new GuestConsole({ settleMs: 50 });
    const before = Array.from({ length: 15 }, (_, i) => `before ${i}`);
    const after = Array.from({ length: 25 }, (_, i) => `after ${i}`);
    const p = c.waitFor(/never/, { deadlineMs: 5000, step: "boot" });
    feedLines(c, [...before, line, ...after]);
    const f = await faultOf(p);
    expect(f.kind).toBe(kind);
    expect(f.step).toBe("boot");
    expect(f.excerpt).toEqual([...before.slice(5), line, ...after.slice(0, 20)]);
    expect(f.message).toContain(line.replace(/^\[[^\]]*\]\s*/, ""));
    expect(f.evidence).toBe(f.excerpt);
  });

  it("waits a moment for the trace after the fault line", async () => {
    const c = new GuestConsole({ settleMs: 100 });
    const p = c.waitFor(/never/, { deadlineMs: 5000 });
    feedLines(c, ["[    5.0] BUG: kernel NULL pointer dereference, address: 0000000000000008"]);
    expect(await state(p)).toBe("pending");
    feedLines(c, ["[    5.0] Call Trace:", "[    5.0]  <TASK>"]);
    const f = await faultOf(p);
    expect(f.excerpt).toHaveLength(3);
  });

  it("rejects a watched promise at once and aborts its signal", async () => {
    const c = new GuestConsole({ settleMs: 10 });
    let aborted: unknown;
    const p = c.watch(
      (signal) =>
        new Promise<string>((resolve) => {
          signal.addEventListener("abort", () => {
            aborted = signal.reason;
          });
          setTimeout(() => resolve("too late"), 2000);
        }),
      { step: "ssh exec" },
    );
    feedLines(c, [FAULT_LINES[0]?.[1] ?? ""]);
    const f = await faultOf(p);
    expect(f.kind).toBe("panic");
    expect(aborted).toBe(f);
  });

  it("passes a watched result or error through when nothing happens", async () => {
    const c = new GuestConsole();
    await expect(c.watch(Promise.resolve(42))).resolves.toBe(42);
    await expect(c.watch(Promise.reject(new Error("ssh failed")))).rejects.toThrow("ssh failed");
  });

  it("lets a step expect a pattern, and allow() span steps", async () => {
    const c = new GuestConsole({ settleMs: 10 });
    const warn = "[    5.0] WARNING: CPU: 0 PID: 1 at lib/test_kho.c:10 kho_test+0x10/0x20";
    const p = c.waitFor(/done/, { deadlineMs: 1000, expect: [/WARNING: .*test_kho/] });
    feedLines(c, [warn, "done"]);
    await expect(p).resolves.toBeDefined();
    // Another step does not expect it...
    const q = c.waitFor(/done again/, { deadlineMs: 1000 });
    feedLines(c, [warn]);
    expect((await faultOf(q)).kind).toBe("warning");
    // ...unless allowed across steps.
    const release = c.allow([/WARNING:/]);
    const r = c.waitFor(/done at last/, { deadlineMs: 1000 });
    feedLines(c, [warn, "done at last"]);
    await expect(r).resolves.toBeDefined();
    release();
  });

  it("fails the next step with a fault seen while no step ran", async () => {
    const c = new GuestConsole({ settleMs: 10 });
    feedLines(c, [
      "[    5.0] BUG: Bad page state in process memfd  pfn:1234",
      "page dumped because: nonzero mapcount",
    ]);
    const f = await faultOf(c.watch(Promise.resolve("ok")));
    expect(f.kind).toBe("bad-page");
    expect(f.excerpt).toContain("page dumped because: nonzero mapcount");
    // Reported once.
    await expect(c.watch(Promise.resolve("ok"))).resolves.toBe("ok");
  });

  it("reports the boot the fault happened in", async () => {
    const c = new GuestConsole({ settleMs: 10 });
    const p = c.waitFor(/never/, { deadlineMs: 1000, step: "kexec" });
    feedLines(c, [...BOOT1, ...KEXEC, ...BOOT2, "[    1.0] KHO: failed to restore the memfd: -ENOENT"]);
    const f = await faultOf(p);
    expect(f).toMatchObject({ kind: "kho-failure", boot: 2, step: "kexec" });
    expect(f.message).toMatch(/KHO\/LUO reported a failure \(during kexec, boot 2\)/);
  });
});

describe("deadlines", () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it("reports a guest silent past its limit, with its last lines", async () => {
    const c = new GuestConsole();
    const p = c.waitFor(/login:/, { deadlineMs: 60_000, silenceMs: 5_000, step: "boot" });
    const caught = faultOf(p);
    feedLines(c, BOOT1.slice(0, 3));
    await vi.advanceTimersByTimeAsync(4_000);
    c.feed("[    1.0] half a line"); // output, even without a newline, is a sign of life
    await vi.advanceTimersByTimeAsync(4_000);
    expect(await state(p)).toBe("pending");
    await vi.advanceTimersByTimeAsync(1_001);
    const f = await caught;
    expect(f.kind).toBe("silent");
    expect(f.detail).toBe("no console output for 5s");
    expect(f.excerpt).toEqual([...BOOT1.slice(0, 3), "[    1.0] half a line"]);
  });

  it("tells a deadline (still printing) from silence", async () => {
    const c = new GuestConsole();
    const caught = faultOf(c.waitFor(/login:/, { deadlineMs: 3_000, silenceMs: 2_000 }));
    for (let i = 0; i < 4; i++) {
      feedLines(c, [`line ${i}`]);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect((await caught).kind).toBe("timeout");
  });

  it("a fault wins over the deadline that expires while its trace comes in", async () => {
    const c = new GuestConsole({ settleMs: 500 });
    const caught = faultOf(c.waitFor(/never/, { deadlineMs: 100 }));
    feedLines(c, [FAULT_LINES[2]?.[1] ?? ""]);
    await vi.advanceTimersByTimeAsync(600);
    expect((await caught).kind).toBe("oops");
  });
});

describe("end of stream", () => {
  it("fails waiting steps as qemu-exited, and later ones at once", async () => {
    const c = new GuestConsole();
    const p = c.waitFor(/login:/, { deadlineMs: 10_000 });
    feedLines(c, BOOT1);
    c.end("QEMU exited with code 0");
    const f = await faultOf(p);
    expect(f).toMatchObject({ kind: "qemu-exited", detail: "QEMU exited with code 0" });
    expect(f.excerpt).toEqual(BOOT1);
    expect((await faultOf(c.watch(Promise.resolve(1)))).kind).toBe("qemu-exited");
  });

  it("reports the panic, not the exit it caused (panic=-1 with -no-reboot)", async () => {
    const c = new GuestConsole({ settleMs: 10_000 });
    const p = c.waitFor(/login:/, { deadlineMs: 60_000 });
    feedLines(c, [
      ...BOOT1,
      FAULT_LINES[0]?.[1] ?? "",
      "[    2.1] ---[ end Kernel panic - not syncing: VFS ]---",
    ]);
    c.end("QEMU exited with code 0");
    const f = await faultOf(p);
    expect(f.kind).toBe("panic");
    expect(f.excerpt.at(-1)).toContain("end Kernel panic");
  });
});

describe("a recorded x86_64 boot (Debian 7.2 kernel, TCG, no root fs)", () => {
  const raw = readFileSync(fileURLToPath(new URL("../fixtures/vm/x86_64-vfs-panic.log", import.meta.url)));

  /** Feeds the recording in uneven chunks, as a pipe delivers it. */
  function replay(c: GuestConsole, bytes: Buffer): void {
    for (let at = 0, n = 1; at < bytes.length; at += n, n = (n * 7 + 13) % 997)
      c.feed(bytes.subarray(at, at + n));
  }

  it("sees the banner behind SeaBIOS's escape codes and reports the VFS panic with its trace", async () => {
    const c = new GuestConsole({ settleMs: 10 });
    const banner = c.waitFor(/Linux version \d/, { deadlineMs: 1000 });
    const boot = c.waitFor(/Run \/init/, { deadlineMs: 1000, step: "boot" });
    replay(c, raw);
    expect((await banner).line.text).toMatch(/^Probing EDD.*\[ {4}0\.000000\] Linux version 7\.2\.13/);
    const f = await faultOf(boot);
    expect(f.kind).toBe("panic");
    expect(f.detail).toBe("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)");
    expect(f.excerpt).toHaveLength(29); // 10 before, the panic, and the 18 lines it printed after
    expect(f.excerpt.some((l) => l.includes("mount_root_generic"))).toBe(true);
  });

  it("splits a kexec and a reset of the same recording into three boots", () => {
    const c = new GuestConsole();
    const firstLines: string[] = [];
    c.onLine((l) => {
      if (firstLines.length < l.boot) firstLines.push(l.text);
    });
    replay(c, raw);
    replay(c, Buffer.from("[   12.000000] kexec_core: Starting new kernel\r\n"));
    replay(c, raw);
    expect(c.boot).toBe(2);
    replay(c, raw);
    expect(c.boot).toBe(3);
    // Boot 2 starts right after the kexec line (firmware output included); boot 3 at its banner.
    expect(firstLines.map((l) => /SeaBIOS|Probing EDD/.exec(l)?.[0])).toEqual([
      "SeaBIOS",
      "SeaBIOS",
      "Probing EDD",
    ]);
  });
});
