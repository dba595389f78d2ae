// A kexec while TCP streams run both ways through the guest's virtio-net. The old kernel's
// device_shutdown() breaks every virtqueue (virtio_device_shutdown, 7.2) while NAPI still polls;
// in 7.2.13 virtnet_poll_cleantx() then loops forever on a broken TX queue whose device had
// completed most buffers (fixed upstream by 0d0eff39ceb3 "virtio_ring: fix infinite loop in
// virtnet_poll_cleantx when device is broken", in 7.3): an RCU stall before "Starting new
// kernel", about 1 kexec in 150 with SSH traffic only, 3 in 55 with this bulk traffic (arm64).
// The harness boots every guest with virtio_net.napi_tx=0 (src/arch.ts), which keeps 7.2 out of
// that loop; `--append virtio_net.napi_tx=1` brings it back. The scenario passes when the new
// kernel comes up, and only when the guest's NIC was busy both ways right before the trigger.
import { createServer, type Server, type Socket } from "node:net";
import type { ScenarioContext } from "../api/context.js";
import type { Scenario } from "../api/scenario.js";
import { HarnessError } from "../errors.js";
import { loadNextKernel } from "../session/kexec.js";
import { AgentOkSchema } from "../agent/protocol.js";
import { kexecWithAgent } from "./kexec-step.js";

/** The host as the guest sees it through slirp (its 127.0.0.1). */
const HOST_FROM_GUEST = "10.0.2.2";
/** How long the streams run before the window in which the guest's NIC must be busy (its own
 *  counters: the host's count of the stream to the guest moves in bursts, as the slow guest
 *  drains a loopback buffer of megabytes), right before the trigger. */
const WARMUP_MS = 1_000;
const MOVING_WINDOW_MS = 1_000;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);
/** A bulk send moves megabytes a second even under TCG; less is not the traffic claimed. */
const MIN_WINDOW_TX = 128 * 1024;

/** eth0's byte counters in the guest. */
async function nicBytes(ctx: ScenarioContext): Promise<{ tx: number; rx: number }> {
  const out = await ctx.guest.run(
    "cat /sys/class/net/eth0/statistics/tx_bytes /sys/class/net/eth0/statistics/rx_bytes",
  );
  const [tx, rx] = out.trim().split(/\s+/).map(Number);
  if (!Number.isSafeInteger(tx) || !Number.isSafeInteger(rx))
    throw new HarnessError(`eth0's byte counters are not two numbers: ${JSON.stringify(out)}`);
  return { tx: tx as number, rx: rx as number };
}

/** A loopback TCP server: `sink` counts what the guest sends, `source` sends until closed. */
class Stream {
  bytes = 0;
  connections = 0;
  private readonly sockets = new Set<Socket>();
  private constructor(
    readonly name: string,
    private readonly server: Server,
  ) {}

  static async listen(name: string, mode: "sink" | "source"): Promise<Stream> {
    const server = createServer();
    const stream = new Stream(name, server);
    server.on("connection", (socket) => stream.accept(socket, mode));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return stream;
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new HarnessError(`${this.name}: no port`);
    return address.port;
  }

  private accept(socket: Socket, mode: "sink" | "source"): void {
    this.connections++;
    this.sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => this.sockets.delete(socket));
    if (mode === "sink") {
      socket.on("data", (d: Buffer) => (this.bytes += d.length));
      return;
    }
    const pump = (): void => {
      while (!socket.destroyed && socket.write(CHUNK)) this.bytes += CHUNK.length;
    };
    socket.on("drain", () => {
      this.bytes += CHUNK.length;
      pump();
    });
    pump();
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

const MiB = 1024 * 1024;
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

export const kexecTraffic: Scenario = {
  id: "kexec-traffic",
  description:
    "kexec with TCP streams running both ways through virtio-net: the old kernel shuts the NIC down and the new one comes up (7.2.13 without 0d0eff39ceb3 can spin in virtnet_poll_cleantx)",
  needs: ["kho"],
  boot: { kho: true },
  needsQemu: "its TCP streams run between the host and QEMU's user network",
  async run(ctx) {
    const up = await Stream.listen("guest to host", "sink");
    const down = await Stream.listen("host to guest", "source");
    try {
      await ctx.phase("kexec load", () => ctx.agent(loadNextKernel(ctx.guest.nextKernel), AgentOkSchema));
      // Y: TX completions reaped in NAPI, where 7.2.13 can loop (the harness boots with N)
      const napiTx = (await ctx.guest.run("cat /sys/module/virtio_net/parameters/napi_tx")).trim();
      await ctx.phase("streams", async () => {
        // busybox nc in the background, every descriptor off the SSH channel (which then closes):
        // the streams outlive the command until the kexec
        const r = await ctx.guest.exec(
          `(nc ${HOST_FROM_GUEST} ${up.port} </dev/zero >/dev/null 2>&1 &) ; ` +
            `(sleep 100000 </dev/null 2>/dev/null | nc ${HOST_FROM_GUEST} ${down.port} >/dev/null 2>&1 &)`,
        );
        ctx.check(r.code === 0, "the guest could not start its nc streams", [r.stderr]);
        await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
      });
      // The guest's own counters say what its NIC did in the last window before the trigger: its
      // bulk send fills the TX queue, and RX (the host's ACKs and the stream to the guest) makes
      // the interrupts whose NAPI poll runs the TX cleanup.
      const before = await nicBytes(ctx);
      await new Promise((resolve) => setTimeout(resolve, MOVING_WINDOW_MS));
      const last = await nicBytes(ctx);
      const atTrigger = { up: up.bytes, down: down.bytes };
      ctx.check(
        up.connections === 1 && down.connections === 1,
        `the guest's streams did not both connect (guest to host ${up.connections}, host to guest ${down.connections})`,
      );
      const window = { tx: last.tx - before.tx, rx: last.rx - before.rx };
      ctx.check(
        window.tx >= MIN_WINDOW_TX && window.rx > 0,
        `the guest's NIC was not busy right before the kexec: in ${MOVING_WINDOW_MS} ms it sent ${window.tx} bytes (at least ${MIN_WINDOW_TX} expected) and received ${window.rx}`,
      );
      const blackout = await kexecWithAgent(ctx);
      ctx.note(
        `streams before the kexec: guest to host ${mib(atTrigger.up)}, host to guest ${mib(atTrigger.down)}; ` +
          `after the trigger until the link died: ${mib(up.bytes - atTrigger.up)} and ${mib(down.bytes - atTrigger.down)}; ` +
          `napi_tx=${napiTx}; the guest's NIC in the last ${MOVING_WINDOW_MS} ms: sent ${mib(window.tx)}, received ${mib(window.rx)}; new kernel up in ${(blackout.totalMs / 1000).toFixed(1)} s`,
        {
          kind: "traffic",
          upBytes: up.bytes,
          downBytes: down.bytes,
          upBytesAtTrigger: atTrigger.up,
          downBytesAtTrigger: atTrigger.down,
          windowTxBytes: window.tx,
          windowRxBytes: window.rx,
          napiTx: napiTx === "Y",
        },
      );
    } finally {
      up.close();
      down.close();
    }
  },
};
