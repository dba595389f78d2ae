// The gdbstub client against a stand-in stub that speaks the remote protocol as QEMU's does:
// packets framed and checksummed, acks, a stop reply after `c` when the "guest" reaches the
// breakpoint, detach answered OK. The real QEMU is exercised by every e2e kexec.
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { framePacket, GdbStub, parsePackets } from "../../src/vm/gdbstub.js";

describe("remote protocol framing", () => {
  it("frames with the byte-sum checksum (vectors from GDB's documentation)", () => {
    expect(framePacket("?")).toBe("$?#3f");
    expect(framePacket("c")).toBe("$c#63");
    expect(framePacket("OK")).toBe("$OK#9a");
    expect(framePacket("Z0,ffffffff81000000,1")).toMatch(/^\$Z0,ffffffff81000000,1#[0-9a-f]{2}$/);
  });

  it("splits packets out of a stream with acks, keeps a partial one, counts bad checksums", () => {
    expect(parsePackets("+$OK#9a+$S05#b8$T0")).toEqual({ packets: ["OK", "S05"], rest: "$T0", bad: 0 });
    expect(parsePackets("$OK#00")).toEqual({ packets: [], rest: "", bad: 1 });
    expect(parsePackets("$OK#9")).toEqual({ packets: [], rest: "$OK#9", bad: 0 });
  });
});

/** A stub that records what it got; `hit()` makes it report a stop. */
function standIn(path: string) {
  const got: string[] = [];
  let peer: Socket | undefined;
  let buf = "";
  const server: Server = createServer((s) => {
    peer = s;
    s.setEncoding("latin1");
    s.on("data", (d: string) => {
      if (d.includes("\x03")) s.write(`+${framePacket("S02")}`);
      const { packets, rest } = parsePackets(buf + d);
      buf = rest;
      for (const p of packets) {
        got.push(p);
        s.write("+");
        if (p === "?") s.write(framePacket("S05"));
        else if (p.startsWith("Z0,")) s.write(framePacket(p.includes(",dead,") ? "E22" : "OK"));
        else if (p === "D") s.write(framePacket("OK"));
      }
    });
  });
  return {
    got,
    listen: () => new Promise<void>((r) => server.listen(path, r)),
    hit: () => peer?.write(framePacket("T05thread:01;")),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe("GdbStub", () => {
  let dir: string;
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("starts the stub over QMP, sets the breakpoint, resumes, sees the stop and detaches", async () => {
    dir = await mkdtemp(join(tmpdir(), "kho-gdb-"));
    const stub = standIn(join(dir, "gdb.sock"));
    await stub.listen();
    const hmp: string[] = [];
    const vm = {
      workDir: dir,
      qmp: {
        humanMonitorCommand: (c: string) => (
          hmp.push(c),
          Promise.resolve("Waiting for gdb connection on device 'unix:...'\r\n")
        ),
      },
    };
    const gdb = await GdbStub.attach(vm as never);
    expect(hmp).toEqual([`gdbserver unix:${join(dir, "gdb.sock")},server=on,wait=off`]);
    await gdb.setBreakpoint(0xffffffff81234560n, 1);
    gdb.resume();
    const stopped = gdb.waitStop(new AbortController().signal);
    setTimeout(() => stub.hit(), 50);
    expect(await stopped).toBe("T05thread:01;");
    await gdb.detach();
    expect(stub.got).toEqual(["?", "Z0,ffffffff81234560,1", "c", "D"]);
    await expect(gdb.setBreakpoint(0xdeadn, 1)).rejects.toThrow();
    await stub.close();
  });

  it("says so when the stub refuses the breakpoint, and when QEMU will not start it", async () => {
    dir = await mkdtemp(join(tmpdir(), "kho-gdb-"));
    const stub = standIn(join(dir, "gdb.sock"));
    await stub.listen();
    const ok = {
      workDir: dir,
      qmp: { humanMonitorCommand: () => Promise.resolve("Waiting for gdb connection") },
    };
    const gdb = await GdbStub.attach(ok as never);
    await expect(gdb.setBreakpoint(0xdeadn, 1)).rejects.toThrow(/refused a breakpoint at 0xdead: "E22"/);
    await gdb.detach();
    await stub.close();
    const other = await mkdtemp(join(tmpdir(), "kho-gdb-"));
    const no = {
      workDir: other,
      qmp: { humanMonitorCommand: () => Promise.resolve("Could not open gdbserver on device 'x'") },
    };
    await expect(GdbStub.attach(no as never)).rejects.toThrow(/did not start its gdbstub: Could not open/);
    await rm(other, { recursive: true, force: true });
  });
});
