// A client of QEMU's gdbstub (the GDB remote serial protocol) for one job: stop the guest when
// a vCPU reaches a kernel address, and let it go on. QEMU stops the VM when a client connects,
// so the breakpoint is in place before the guest runs again; `D` (detach) removes it and
// resumes. The stub is started over QMP on a socket in the guest's work dir, once per QEMU.
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import type { Vm } from "./qemu.js";

const started = new Set<string>();

/** `$data#checksum`: the checksum is the byte sum of data modulo 256, as two hex digits. */
export function framePacket(data: string): string {
  let sum = 0;
  for (const b of Buffer.from(data, "latin1")) sum = (sum + b) & 0xff;
  return `$${data}#${sum.toString(16).padStart(2, "0")}`;
}

/** Splits what the stub sent into packets (acks and junk between them dropped); returns the rest. */
export function parsePackets(input: string): { packets: string[]; rest: string; bad: number } {
  const packets: string[] = [];
  let bad = 0;
  let i = 0;
  for (;;) {
    const start = input.indexOf("$", i);
    if (start < 0) return { packets, rest: "", bad };
    const hash = input.indexOf("#", start);
    if (hash < 0 || hash + 3 > input.length) return { packets, rest: input.slice(start), bad };
    const data = input.slice(start + 1, hash);
    if (framePacket(data) === input.slice(start, hash + 3)) packets.push(data);
    else bad++;
    i = hash + 3;
  }
}

export class GdbStub {
  private buffer = "";
  private readonly queue: string[] = [];
  private waiter: ((p: string) => void) | undefined;
  private closed: Error | undefined;
  private failWaiter: ((e: Error) => void) | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      const { packets, rest, bad } = parsePackets(this.buffer + chunk);
      this.buffer = rest;
      for (let k = 0; k < bad; k++) socket.write("-");
      for (const p of packets) {
        socket.write("+");
        const w = this.waiter;
        this.waiter = undefined;
        this.failWaiter = undefined;
        if (w) w(p);
        else this.queue.push(p);
      }
    });
    const end = (why: string) => {
      this.closed ??= new Error(why);
      this.failWaiter?.(this.closed);
    };
    socket.on("error", (e) => end(`gdbstub connection: ${e.message}`));
    socket.on("close", () => end("gdbstub connection closed"));
  }

  /** Starts QEMU's gdbstub (once per guest) and connects: the guest is stopped when this resolves. */
  static async attach(vm: Pick<Vm, "qmp" | "workDir">, deadlineMs = 5_000): Promise<GdbStub> {
    const path = join(vm.workDir, "gdb.sock");
    if (!started.has(path)) {
      const said = await vm.qmp.humanMonitorCommand(`gdbserver unix:${path},server=on,wait=off`);
      if (!/waiting for gdb connection/i.test(said))
        throw new Error(`QEMU did not start its gdbstub: ${said.trim()}`);
      started.add(path);
    }
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path, () => resolve(s));
      s.once("error", reject);
      setTimeout(
        () => reject(new Error(`no gdbstub connection within ${deadlineMs} ms`)),
        deadlineMs,
      ).unref();
    });
    const stub = new GdbStub(socket);
    // QEMU stops the VM on connect; asking why it stopped makes sure it has.
    await stub.request("?", deadlineMs);
    return stub;
  }

  /** The next packet from the stub. */
  next(deadlineMs: number, signal?: AbortSignal): Promise<string> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error(`no answer from the gdbstub within ${deadlineMs} ms`)),
        deadlineMs,
      );
      timer.unref();
      const fail = (e: Error) => {
        clearTimeout(timer);
        this.waiter = undefined;
        this.failWaiter = undefined;
        reject(e);
      };
      signal?.addEventListener("abort", () => fail(new Error("aborted")), { once: true });
      this.failWaiter = fail;
      this.waiter = (p) => {
        clearTimeout(timer);
        resolve(p);
      };
    });
  }

  private send(data: string): void {
    if (this.closed) throw this.closed;
    this.socket.write(framePacket(data));
  }

  /** Sends a command and returns its answer. */
  async request(data: string, deadlineMs = 5_000): Promise<string> {
    this.send(data);
    return this.next(deadlineMs);
  }

  /** A software breakpoint (under TCG QEMU keeps it out of guest memory). */
  async setBreakpoint(addr: bigint, kind: number): Promise<void> {
    const r = await this.request(`Z0,${addr.toString(16)},${kind}`);
    if (r !== "OK") throw new Error(`the gdbstub refused a breakpoint at 0x${addr.toString(16)}: "${r}"`);
  }

  /** Lets the guest run; `waitStop` gives the stop it reports. */
  resume(): void {
    this.send("c");
  }

  /** Waits for a stop reply (`S`/`T`: a vCPU hit the breakpoint). */
  async waitStop(signal: AbortSignal): Promise<string> {
    for (;;) {
      const p = await this.next(24 * 3600_000, signal);
      if (/^[ST][0-9a-f]{2}/i.test(p)) return p;
    }
  }

  /** Stops a running guest (any byte does; ^C is the protocol's). */
  async interrupt(deadlineMs = 5_000): Promise<void> {
    if (this.closed) return;
    this.socket.write("\x03");
    await this.next(deadlineMs);
  }

  /** Removes every breakpoint and lets the guest go on (QEMU's detach), then disconnects. */
  async detach(): Promise<void> {
    try {
      if (!this.closed) await this.request("D");
    } finally {
      this.socket.destroy();
    }
  }
}
