// The SSH link against an in-process ssh2 server on 127.0.0.1 that runs commands with the
// host's real `sh` in a temp dir (so `cat > file` uploads are real), authenticating with the
// generated keys.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect as connectTcp, createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ssh2 from "ssh2";
import type { Connection, Server as SshServer } from "ssh2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dropbearHostKey, generateKeys, publicKeyBlob } from "../../src/vm/keys.js";
import { GuestBoots } from "../../src/vm/guest-boots.js";
import { connectSsh, SshFailure, type SshLink } from "../../src/vm/ssh.js";

const keys = generateKeys("test");
let dir: string;
let bootId = "11111111-1111-1111-1111-111111111111";
const connections = new Set<Connection>();
/** boot_id questions the server answers by dropping the connection (an sshd dying with its kernel). */
let dropBootIdQuestions = 0;

function startServer(listen: (s: SshServer) => void): SshServer {
  const client = ssh2.utils.parseKey(keys.client.public);
  if (client instanceof Error) throw client;
  const server = new ssh2.Server({ hostKeys: [keys.host.private] }, (conn) => {
    connections.add(conn);
    // Exists at run time (ssh2 lib/server.js), missing from @types/ssh2's Connection.
    (conn as Connection & { setNoDelay(on: boolean): void }).setNoDelay(true);
    conn.on("close", () => connections.delete(conn));
    conn.on("error", () => undefined);
    conn.on("authentication", (ctx) => {
      const ok =
        ctx.method === "publickey" &&
        ctx.key.data.equals(client.getPublicSSH()) &&
        (!ctx.signature || !ctx.blob || client.verify(ctx.blob, ctx.signature, ctx.hashAlgo));
      if (ok) ctx.accept();
      else ctx.reject(["publickey"]);
    });
    conn.on("ready", () =>
      conn.on("session", (acceptSession) => {
        acceptSession().on("exec", (accept, _reject, info) => {
          const ch = accept();
          if (info.command === "__drop__") return conn.end(); // the guest vanishes (kexec)
          if (info.command.includes("boot_id") && dropBootIdQuestions > 0) {
            dropBootIdQuestions--;
            return conn.end();
          }
          const command = info.command.replace("/proc/sys/kernel/random/boot_id", "boot_id");
          writeFileSync(join(dir, "boot_id"), `${bootId}\n`);
          const child = spawn("sh", ["-c", command], { cwd: dir });
          child.stdin.on("error", () => undefined); // the command may exit before reading its input
          ch.pipe(child.stdin);
          child.stdout.pipe(ch, { end: false });
          child.stderr.pipe(ch.stderr, { end: false });
          ch.on("close", () => child.kill("SIGKILL"));
          child.on("close", (code, signal) => {
            if (signal) ch.exit(signal.replace(/^SIG/, ""), false, "");
            else ch.exit(code ?? 0);
            ch.end();
          });
        });
      }),
    );
  });
  listen(server);
  return server;
}

let server: SshServer;
let port: number;
const login = () => ({ privateKey: keys.client.private, hostKey: keys.host.public });
const connect = () => connectSsh({ host: "127.0.0.1", port, ...login(), deadlineMs: 5_000 });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ssh-test-"));
  server = startServer((s) => s.listen(0, "127.0.0.1"));
  await new Promise((resolve) => server.once("listening", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const c of connections) c.end();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

describe("keys", () => {
  it("converts the ed25519 host key to dropbear's format", () => {
    const db = dropbearHostKey(keys.host.private);
    const pub = publicKeyBlob(keys.host.public).subarray(-32);
    expect(db.subarray(0, 15)).toEqual(Buffer.from("\0\0\0\x0bssh-ed25519", "latin1"));
    expect(db.readUInt32BE(15)).toBe(64);
    expect(db.subarray(19 + 32)).toEqual(pub);
    expect(db).toHaveLength(19 + 64);
  });

  it("never hands out a key ssh2 cannot read back (its zero-led ed25519 keys are one byte short)", () => {
    // One key in ~128 came out malformed before; 400 pairs (800 keys) would show it 6 times.
    for (let i = 0; i < 400; i++) {
      const pair = generateKeys(`k${i}`);
      for (const k of [pair.host, pair.client]) {
        expect(ssh2.utils.parseKey(k.private)).not.toBeInstanceOf(Error);
        expect(publicKeyBlob(k.public).subarray(-32)).toHaveLength(32);
        expect(dropbearHostKey(k.private)).toHaveLength(19 + 64);
      }
    }
  });
});

describe("SshLink", () => {
  let link: SshLink;
  beforeAll(async () => void (link = await connect()));
  afterAll(() => link.close());

  it("returns exit code, stdout and stderr", async () => {
    const r = await link.exec("echo out; echo err >&2; exit 3", { deadlineMs: 5_000 });
    expect(r).toEqual({ code: 3, signal: null, stdout: "out\n", stderr: "err\n" });
  });

  it("feeds stdin", async () => {
    const r = await link.exec("tr a-z A-Z", { deadlineMs: 5_000, stdin: "hello" });
    expect(r.stdout).toBe("HELLO");
  });

  it("reports a signal death", async () => {
    const r = await link.exec("kill -TERM $$", { deadlineMs: 5_000 });
    expect(r).toMatchObject({ code: null, signal: "SIGTERM" });
  });

  it("enforces the command deadline with the output so far", async () => {
    const err: unknown = await link
      .exec("echo started; sleep 10", { deadlineMs: 300 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SshFailure);
    expect(err).toMatchObject({ kind: "timeout", evidence: ["stdout: started"] });
    // The link is still usable.
    expect((await link.exec("true", { deadlineMs: 5_000 })).code).toBe(0);
  });

  it("streams: JSON out, a line in, more out", async () => {
    const s = await link.execStream(`echo '{"ready":true}'; read cmd; echo "got $cmd"; echo bye >&2`);
    expect(JSON.parse(await s.readLine(5_000))).toEqual({ ready: true });
    s.writeLine("kexec");
    expect(await s.readLine(5_000)).toBe("got kexec");
    expect(await s.done).toEqual({ kind: "exited", code: 0, signal: null });
    expect(s.stderr()).toBe("bye\n");
    await expect(s.readLine(1_000)).rejects.toMatchObject({ kind: "closed" });
  });

  it("times out a stream read", async () => {
    const s = await link.execStream("sleep 5");
    await expect(s.readLine(200)).rejects.toMatchObject({ kind: "timeout" });
    s.close();
    expect((await s.done).kind).toBe("closed");
  });

  it("uploads a buffer and a file with their modes", async () => {
    await link.upload(Buffer.from("#!/bin/sh\necho hi\n"), join(dir, "agent"), 0o755);
    expect(readFileSync(join(dir, "agent"), "utf8")).toBe("#!/bin/sh\necho hi\n");
    expect(statSync(join(dir, "agent")).mode & 0o777).toBe(0o755);

    const big = Buffer.alloc(3 << 20, 0xa5); // larger than any SSH window: exercises backpressure
    const local = join(dir, "local.bin");
    writeFileSync(local, big);
    await link.upload(local, join(dir, "remote.bin"), 0o600);
    expect(readFileSync(join(dir, "remote.bin")).equals(big)).toBe(true);
    expect(statSync(join(dir, "remote.bin")).mode & 0o777).toBe(0o600);
  });

  it("reports a failed upload", async () => {
    await expect(link.upload(Buffer.from("x"), join(dir, "no/such/dir/file"))).rejects.toThrow(
      /upload to .* failed/,
    );
  });
});

describe("connecting", () => {
  it("refuses a server whose host key is not the expected one, without retrying", async () => {
    const other = generateKeys("other");
    const start = Date.now();
    const err: unknown = await connectSsh({
      host: "127.0.0.1",
      port,
      privateKey: keys.client.private,
      hostKey: other.host.public,
      deadlineMs: 10_000,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "host-key" });
    expect(Date.now() - start).toBeLessThan(3_000);
  });

  it("accepts any of several pinned host keys (a machine's known_hosts lines)", async () => {
    const other = generateKeys("other");
    const link = await connectSsh({
      host: "127.0.0.1",
      port,
      privateKey: keys.client.private,
      hostKey: [other.host.public, keys.host.public],
      deadlineMs: 5_000,
    });
    await link.close();
  });

  it("asks only for the pinned keys' types, and says so when the server has none of them", async () => {
    const ecdsa = ssh2.utils.generateKeyPairSync("ecdsa", { bits: 256 }).public;
    const start = Date.now();
    const err: unknown = await connectSsh({
      host: "127.0.0.1",
      port,
      privateKey: keys.client.private,
      hostKey: [ecdsa],
      deadlineMs: 10_000,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "host-key" });
    expect((err as Error).message).toMatch(/has no host key of the pinned type \(ecdsa-sha2-nistp256\)$/);
    expect(Date.now() - start).toBeLessThan(3_000);
  });

  it("reports a refused client key", async () => {
    const other = generateKeys("other");
    const err: unknown = await connectSsh({
      host: "127.0.0.1",
      port,
      privateKey: other.client.private,
      hostKey: keys.host.public,
      deadlineMs: 10_000,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "auth" });
  });

  it("retries until the sshd answers, and gives up at the deadline", async () => {
    const free = await freePort();
    const late = connectSsh({ host: "127.0.0.1", port: free, ...login(), deadlineMs: 5_000 });
    await new Promise((r) => setTimeout(r, 600));
    const s = startServer((srv) => srv.listen(free, "127.0.0.1"));
    const l = await late;
    expect((await l.exec("echo up", { deadlineMs: 5_000 })).stdout).toBe("up\n");
    await l.close();
    await new Promise((r) => s.close(r));

    const err: unknown = await connectSsh({
      host: "127.0.0.1",
      port: free,
      ...login(),
      deadlineMs: 800,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "unreachable" });
    expect((err as SshFailure).message).toMatch(/no SSH answer from 127.0.0.1:\d+ within 0.8s/);
  });

  it("connects over a unix socket", async () => {
    const path = join(dir, "ssh.sock");
    const s = startServer((srv) => srv.listen(path));
    const l = await connectSsh({ socketPath: path, ...login(), deadlineMs: 5_000 });
    expect((await l.exec("echo unix", { deadlineMs: 5_000 })).stdout).toBe("unix\n");
    await l.close();
    await new Promise((r) => s.close(r));
  });

  it("closes a link whose peer went silent (a machine stopped at its kexec) within seconds", async () => {
    // A TCP proxy that stops forwarding and never closes: what a stopped guest behind slirp is.
    let silent = false;
    const sockets = new Set<import("node:net").Socket>();
    // allowHalfOpen: the client's goodbye (FIN) gets no FIN back, as with slirp and a stopped guest
    const proxy = createServer({ allowHalfOpen: true }, (inbound) => {
      const outbound = connectTcp(port, "127.0.0.1");
      sockets.add(inbound).add(outbound);
      inbound.on("data", (d) => silent || outbound.write(d));
      outbound.on("data", (d) => silent || inbound.write(d));
      inbound.on("error", () => undefined);
      outbound.on("error", () => undefined);
    }).listen(0, "127.0.0.1");
    await new Promise((r) => proxy.once("listening", r));
    const l = await connectSsh({
      host: "127.0.0.1",
      port: (proxy.address() as AddressInfo).port,
      ...login(),
      deadlineMs: 5_000,
    });
    expect((await l.exec("echo up", { deadlineMs: 5_000 })).stdout).toBe("up\n");
    silent = true;
    const started = performance.now();
    await l.close();
    expect(performance.now() - started).toBeLessThan(5_000);
    for (const s of sockets) s.destroy();
    await new Promise((r) => proxy.close(r));
  });

  it("notices a lost connection in exec and in a stream", async () => {
    const l = await connect();
    const s = await l.execStream("echo waiting; sleep 10");
    expect(await s.readLine(5_000)).toBe("waiting");
    await expect(l.exec("__drop__", { deadlineMs: 5_000 })).rejects.toMatchObject({ kind: "lost" });
    expect((await s.done).kind).toBe("lost");
    await expect(l.exec("true", { deadlineMs: 1_000 })).rejects.toMatchObject({ kind: "lost" });
  });
});

describe("GuestBoots", () => {
  it("counts boots by boot_id and waits for a new one after kexec", async () => {
    const boots = new GuestBoots({ host: "127.0.0.1", port, ...login() });
    const first = await boots.connect(5_000);
    expect(first).toMatchObject({ boot: 1, bootId: bootId });
    await first.link.close();

    // The old kernel still answers for a while, then the new one does.
    setTimeout(() => (bootId = "22222222-2222-2222-2222-222222222222"), 800);
    const second = await boots.reconnect(5_000);
    expect(second).toMatchObject({ boot: 2, bootId: "22222222-2222-2222-2222-222222222222" });
    await second.link.close();

    const err: unknown = await boots.reconnect(1_200).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "timeout" });
    expect(boots.bootIds).toHaveLength(2);
  });

  it("looks past an old kernel whose sshd dies under the boot id question (no console to tell)", async () => {
    const boots = new GuestBoots({ host: "127.0.0.1", port, ...login() });
    const first = await boots.connect(5_000);
    await first.link.close();
    dropBootIdQuestions = 2;
    setTimeout(() => (bootId = "55555555-5555-5555-5555-555555555555"), 300);
    const second = await boots.reconnect(5_000);
    expect(dropBootIdQuestions).toBe(0);
    expect(second).toMatchObject({ boot: 2, bootId: "55555555-5555-5555-5555-555555555555" });
    await second.link.close();
  });

  it("takes a boot id the console already told, and asks when it is not new", async () => {
    const boots = new GuestBoots({ host: "127.0.0.1", port, ...login() });
    // The server's own id differs: a link recorded under the told id ran no boot_id command.
    const told = "33333333-3333-3333-3333-333333333333";
    const first = await boots.connect(5_000, told);
    expect(first).toMatchObject({ boot: 1, bootId: told });
    await first.link.close();
    const next = "44444444-4444-4444-4444-444444444444";
    const second = await boots.reconnect(5_000, next);
    expect(second).toMatchObject({ boot: 2, bootId: next });
    await second.link.close();
    // The same id again is no new boot: fall back to asking, which finds the server's own id.
    const third = await boots.reconnect(5_000, next);
    expect(third).toMatchObject({ boot: 3, bootId });
    await third.link.close();
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
