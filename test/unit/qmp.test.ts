// Against a real QEMU with no kernel (-S: the CPUs never start), so it needs no guest image.
import { execFileSync } from "node:child_process";
import { mkdtempSync, openSync, readSync, closeSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QmpClient, QmpError } from "../../src/vm/qmp.js";

const QEMU = "qemu-system-x86_64";

function qemuMissing(): string | undefined {
  try {
    execFileSync(QEMU, ["--version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return `${QEMU} is not installed (kho doctor --install)`;
  }
}

const missing = qemuMissing();
if (missing) console.log(`skipping QMP tests: ${missing}`);

describe.skipIf(missing)("QmpClient against real QEMU", () => {
  let dir: string;
  let qemu: ResultPromise<{ reject: false }>;
  let qmp: QmpClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "qmp-test-"));
    const sock = join(dir, "qmp.sock");
    qemu = execa(
      QEMU,
      [
        "-M",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "64",
        "-S",
        "-nodefaults",
        "-display",
        "none",
        "-qmp",
        `unix:${sock},server=on,wait=off`,
      ],
      { reject: false },
    );
    // Connecting right away exercises the retry while QEMU creates the socket.
    qmp = await QmpClient.connect(sock, { deadlineMs: 10_000 });
  });

  afterAll(async () => {
    qemu.kill("SIGKILL");
    await qemu;
    rmSync(dir, { recursive: true, force: true });
  });

  it("queries the status, stops and continues", async () => {
    expect(await qmp.queryStatus()).toEqual({ running: false, status: "prelaunch" });
    const resumed = qmp.waitEvent("RESUME", 5_000);
    await qmp.cont();
    await resumed;
    expect((await qmp.queryStatus()).status).toBe("running");
    await qmp.stop();
    expect(await qmp.queryStatus()).toEqual({ running: false, status: "paused" });
  });

  it("turns a QMP error into a QmpError carrying its class", async () => {
    const err: unknown = await qmp.execute("no-such-command").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({ qmpClass: "CommandNotFound", command: "no-such-command" });
  });

  it("runs HMP commands", async () => {
    expect(await qmp.humanMonitorCommand("info status")).toMatch(/VM status: paused/);
  });

  it("dumps guest memory as ELF and saves physical memory", async () => {
    const dump = join(dir, "mem.elf");
    await qmp.dumpGuestMemory(dump, { deadlineMs: 20_000 });
    const head = Buffer.alloc(4);
    const fd = openSync(dump, "r");
    readSync(fd, head, 0, 4, 0);
    closeSync(fd);
    expect(head.toString("latin1")).toBe("\x7fELF");
    expect(statSync(dump).size).toBeGreaterThan(64 << 20);

    const raw = join(dir, "low.bin");
    await qmp.pmemsave(0, 4096, raw);
    expect(statSync(raw).size).toBe(4096);
  });

  it("quits QEMU", async () => {
    await qmp.quit();
    const r = await qemu;
    expect(r.exitCode).toBe(0);
    await expect(qmp.queryStatus()).rejects.toThrow(/closed/);
  });
});
