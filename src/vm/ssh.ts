// SSH to a guest with ssh2: connect (retrying while the guest boots, verifying its host key),
// run commands with deadlines, stream a command's stdin/stdout (the guest agent's protocol),
// upload files without SFTP (dropbear has none by default), and follow the guest across kexec.
//
// Transport: QEMU user networking forwards a loopback TCP port to the guest's port 22
// (qemu.ts). The port is chosen by the host kernel (hostfwd on port 0) and read back over QMP,
// so parallel guests never race for a port; a unix-socket forward does not exist in QEMU 10's
// slirp ("Bad protocol name"). A `socketPath` target is accepted too, for a socket that is
// already connected to an sshd (a chardev or a test server).
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { connect as netConnect, type Socket } from "node:net";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { setTimeout as sleep } from "node:timers/promises";
import ssh2 from "ssh2";
import type { ClientChannel } from "ssh2";
import { HarnessError } from "../errors.js";
import { publicKeyBlob } from "./keys.js";
import { scaled } from "../util/deadline.js";

const { Client } = ssh2; // CommonJS module
type Client = InstanceType<typeof Client>;

export type SshTarget = { readonly host: string; readonly port: number } | { readonly socketPath: string };

export interface SshLogin {
  /** Default root. */
  readonly username?: string;
  /** The client's private key (OpenSSH format). */
  readonly privateKey: string;
  /**
   * The host public key line ("ssh-ed25519 AAAA...") the server must present, or several (a
   * machine's known_hosts entries): any other key is refused, and the key exchange asks only
   * for these keys' types.
   */
  readonly hostKey: string | readonly string[];
}

export type SshConnectOptions = SshTarget &
  SshLogin & {
    /** How long to keep retrying while the guest's sshd does not answer (a duration in ms). */
    readonly deadlineMs: number;
    readonly signal?: AbortSignal;
  };

/**
 * unreachable: no sshd answered before the deadline. host-key: a different machine answered.
 * auth: our key was refused. timeout: a command overran its deadline. lost: the connection
 * dropped (the guest rebooted, kexec'd or died). closed: a command ended before its output came.
 */
export type SshFailureKind = "unreachable" | "host-key" | "auth" | "timeout" | "lost" | "closed";

export class SshFailure extends HarnessError {
  override readonly name = "SshFailure";
  constructor(
    readonly kind: SshFailureKind,
    message: string,
    evidence: readonly string[] = [],
  ) {
    super(message, evidence);
  }
}

export interface ExecResult {
  /** null when the command died from a signal, then `signal` names it. */
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ExecOptions {
  readonly deadlineMs: number;
  /** Sent, then EOF. Without it the command gets EOF at once. */
  readonly stdin?: string | Buffer | Readable;
  readonly signal?: AbortSignal;
}

export type StreamOutcome =
  | { readonly kind: "exited"; readonly code: number | null; readonly signal: string | null }
  | { readonly kind: "lost"; readonly reason: string }
  /** We closed it (close()) before it exited. */
  | { readonly kind: "closed" };

/** A running command whose stdin and stdout the caller drives line by line. */
export interface ExecStream {
  writeLine(line: string): void;
  /** Sends EOF on stdin. */
  end(): void;
  /** The next stdout line; rejects on deadline or when the command ends first. */
  readLine(deadlineMs: number): Promise<string>;
  /** All stderr so far. */
  stderr(): string;
  /** How the command ended; never rejects (a kexec ends it by losing the connection). */
  readonly done: Promise<StreamOutcome>;
  close(): void;
}

const KEEPALIVE_MS = 5_000;
const KEEPALIVE_COUNT_MAX = 3;
/** A link dropped for unanswered keepalives had a silent peer for at least this long. */
export const KEEPALIVE_SILENCE_MS = KEEPALIVE_MS * KEEPALIVE_COUNT_MAX;
/** ssh2's words for a link dropped that way. */
export const KEEPALIVE_TIMEOUT = "Keepalive timeout";
/** How long close() waits for the peer's goodbye before it drops the socket. */
const CLOSE_MS = 2_000;
/**
 * Per attempt. slirp accepts the host side at once and only then tries the guest, so a guest
 * whose sshd is not up yet shows as a handshake that never comes: retry fresh rather than wait
 * on slirp's SYN backoff, while leaving a slow TCG guest time for its key exchange.
 */
const ATTEMPT_MS = 10_000;
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
const tail = (s: string, n = 20) => s.split("\n").filter(Boolean).slice(-n);

function describe(t: SshTarget): string {
  return "socketPath" in t ? t.socketPath : `${t.host}:${t.port}`;
}

export class SshLink {
  private lostReason: string | undefined;
  private readonly lostWaiters = new Set<(reason: string) => void>();

  /** Use connectSsh. */
  constructor(
    private readonly client: Client,
    readonly target: string,
    /** The connection's socket (ssh2's destroy() does nothing once it has sent its goodbye). */
    private readonly socket?: Socket,
  ) {
    client.on("error", (err: Error) => this.lost(err.message));
    client.on("close", () => this.lost("connection closed"));
    client.setNoDelay(true); // each command is a few small packets: Nagle would add ~40 ms each
  }

  /** Set once the connection is gone (closed by us, or lost). */
  get closedReason(): string | undefined {
    return this.lostReason;
  }

  exec(command: string, given: ExecOptions): Promise<ExecResult> {
    const opts = { ...given, deadlineMs: scaled(given.deadlineMs) };
    if (opts.signal?.aborted) return Promise.reject(new Error(`aborted before start: ${command}`));
    return new Promise<ExecResult>((resolve, reject) => {
      this.openChannel(command, reject, (ch, finish) => {
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let exit: { code: number | null; signal: string | null } | undefined;
        const partial = () => [
          ...tail(Buffer.concat(out).toString()).map((l) => `stdout: ${l}`),
          ...tail(Buffer.concat(err).toString()).map((l) => `stderr: ${l}`),
        ];
        ch.on("data", (d: Buffer) => out.push(d));
        ch.stderr.on("data", (d: Buffer) => err.push(d));
        ch.on("exit", (code: number | null, signal?: string) => (exit = { code, signal: signal ?? null }));
        ch.on("close", () =>
          finish(() => {
            if (!exit) {
              reject(new SshFailure("lost", `SSH connection lost while running: ${command}`, partial()));
            } else {
              resolve({
                ...exit,
                stdout: Buffer.concat(out).toString(),
                stderr: Buffer.concat(err).toString(),
              });
            }
          }),
        );
        const timer = setTimeout(
          () =>
            finish(() => {
              ch.close();
              reject(
                new SshFailure(
                  "timeout",
                  `command did not finish within ${opts.deadlineMs / 1000}s: ${command}`,
                  partial(),
                ),
              );
            }),
          opts.deadlineMs,
        );
        const onAbort = () =>
          finish(() => {
            ch.close();
            reject(
              opts.signal?.reason instanceof Error ? opts.signal.reason : new Error(`aborted: ${command}`),
            );
          });
        opts.signal?.addEventListener("abort", onAbort, { once: true });
        sendStdin(ch, opts.stdin);
        return () => {
          clearTimeout(timer);
          opts.signal?.removeEventListener("abort", onAbort);
        };
      });
    });
  }

  execStream(command: string): Promise<ExecStream> {
    return new Promise<ExecStream>((resolve, reject) => {
      this.openChannel(command, reject, (ch) => {
        resolve(new LineStream(ch, command, () => this.lostReason));
        return () => undefined;
      });
    });
  }

  /**
   * Writes a local file or a buffer to `remotePath` through `cat` (no SFTP server needed),
   * atomically (a .part file renamed), and checks the size that arrived.
   */
  async upload(
    source: string | Buffer,
    remotePath: string,
    mode = 0o644,
    deadlineMs = 300_000,
  ): Promise<void> {
    const size = typeof source === "string" ? (await stat(source)).size : source.length;
    const tmp = `${remotePath}.part`;
    const command = `cat > ${quote(tmp)} && chmod ${mode.toString(8)} ${quote(tmp)} && mv -f ${quote(tmp)} ${quote(remotePath)} && wc -c < ${quote(remotePath)}`;
    const stdin = typeof source === "string" ? createReadStream(source) : source;
    const r = await this.exec(command, { deadlineMs, stdin });
    if (r.code !== 0) {
      throw new HarnessError(`upload to ${remotePath} failed (exit ${r.code ?? r.signal})`, tail(r.stderr));
    }
    const got = Number(r.stdout.trim());
    if (got !== size) throw new HarnessError(`upload to ${remotePath} is ${got} bytes, expected ${size}`);
  }

  /** This boot's random id (/proc/sys/kernel/random/boot_id): changes at every kexec. */
  async bootId(deadlineMs = 30_000): Promise<string> {
    const r = await this.exec("cat /proc/sys/kernel/random/boot_id", { deadlineMs });
    const id = r.stdout.trim();
    if (r.code !== 0 || !id) throw new HarnessError("cannot read the guest's boot_id", tail(r.stderr));
    return id;
  }

  /**
   * Ends the connection. A peer that no longer runs (a machine stopped at its kexec, a kernel
   * gone) never answers the goodbye: after CLOSE_MS the socket is destroyed, so this always ends.
   */
  close(): Promise<void> {
    if (this.lostReason) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => (this.socket ? this.socket.destroy() : this.client.destroy()), CLOSE_MS);
      this.lostWaiters.add(() => {
        clearTimeout(timer);
        resolve();
      });
      this.client.end();
    });
  }

  /** Opens an exec channel; `run` wires it and returns its cleanup, `finish` settles once. */
  private openChannel(
    command: string,
    reject: (err: Error) => void,
    run: (ch: ClientChannel, finish: (fn: () => void) => void) => () => void,
  ): void {
    if (this.lostReason) {
      reject(new SshFailure("lost", `SSH connection is gone (${this.lostReason}): cannot run ${command}`));
      return;
    }
    this.client.exec(command, (err, ch) => {
      if (err) {
        reject(new SshFailure("lost", `cannot start "${command}": ${err.message}`));
        return;
      }
      // Stream errors (a write after the remote end closed) must not crash the harness; the
      // channel's close, with or without an exit status, says how the command ended.
      ch.on("error", () => undefined);
      let settled = false;
      let cleanup: () => void = () => undefined;
      cleanup = run(ch, (fn) => {
        if (settled) return;
        settled = true;
        cleanup();
        fn();
      });
    });
  }

  private lost(reason: string): void {
    if (this.lostReason) return;
    this.lostReason = reason;
    for (const w of this.lostWaiters) w(reason);
    this.lostWaiters.clear();
  }
}

/** ExecStream over one channel: stdout split into lines, queued until read. */
class LineStream implements ExecStream {
  readonly done: Promise<StreamOutcome>;
  private readonly lines: string[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly decoder = new StringDecoder("utf8");
  private buffered = "";
  private err = "";
  private exit: { code: number | null; signal: string | null } | undefined;
  private ended: StreamOutcome | undefined;
  private closedByUs = false;

  constructor(
    private readonly ch: ClientChannel,
    private readonly command: string,
    lostReason: () => string | undefined,
  ) {
    ch.on("data", (d: Buffer) => {
      const parts = (this.buffered + this.decoder.write(d)).split("\n");
      this.buffered = parts.pop() ?? "";
      this.lines.push(...parts.map((l) => l.replace(/\r$/, "")));
      this.wake();
    });
    ch.stderr.on("data", (d: Buffer) => (this.err += d.toString()));
    ch.on("exit", (code: number | null, signal?: string) => (this.exit = { code, signal: signal ?? null }));
    this.done = new Promise<StreamOutcome>((settle) =>
      ch.on("close", () => {
        if (this.buffered) this.lines.push(this.buffered);
        this.ended = this.exit
          ? { kind: "exited", ...this.exit }
          : this.closedByUs
            ? { kind: "closed" }
            : { kind: "lost", reason: lostReason() ?? "channel closed" };
        settle(this.ended);
        this.wake();
      }),
    );
  }

  writeLine(line: string): void {
    this.ch.write(`${line}\n`);
  }
  end(): void {
    this.ch.end();
  }
  stderr(): string {
    return this.err;
  }
  close(): void {
    this.closedByUs = true;
    this.ch.close();
  }

  readLine(given: number): Promise<string> {
    const deadlineMs = scaled(given);
    return new Promise<string>((resolve, reject) => {
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        fn();
      };
      const check = () => {
        const line = this.lines.shift();
        if (line !== undefined) finish(() => resolve(line));
        else if (this.ended) finish(() => reject(this.endedError(this.ended as StreamOutcome)));
      };
      const timer = setTimeout(() => {
        const msg = `no output line from "${this.command}" within ${deadlineMs / 1000}s`;
        finish(() => reject(new SshFailure("timeout", msg, tail(this.err))));
      }, deadlineMs);
      this.waiters.add(check);
      check();
    });
  }

  private endedError(o: StreamOutcome): SshFailure {
    const why =
      o.kind === "lost"
        ? `the connection was lost (${o.reason})`
        : o.kind === "exited"
          ? `it exited (${o.signal ?? `code ${o.code}`})`
          : "it was closed";
    const msg = `no output line from "${this.command}": ${why}`;
    return new SshFailure(o.kind === "lost" ? "lost" : "closed", msg, tail(this.err));
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

function sendStdin(ch: ClientChannel, stdin: ExecOptions["stdin"]): void {
  if (stdin === undefined) ch.end();
  else if (typeof stdin === "string" || Buffer.isBuffer(stdin)) ch.end(stdin);
  else stdin.pipe(ch);
}

/** Errors worth retrying while a guest boots: nothing listens yet, or slirp dropped us. */
function retryable(err: Error & { code?: string; level?: string }): boolean {
  return (
    ["ECONNREFUSED", "ECONNRESET", "ENOENT", "EPIPE", "ETIMEDOUT"].includes(err.code ?? "") ||
    /Timed out while waiting for handshake|Connection lost before handshake|closed before ready/.test(
      err.message,
    )
  );
}

/** Connects, retrying until the guest's sshd answers or `deadlineMs` passes. */
export async function connectSsh(opts: SshConnectOptions): Promise<SshLink> {
  const expected = [opts.hostKey].flat().map(publicKeyBlob);
  if (expected.length === 0) throw new SshFailure("host-key", `no host key is pinned for ${describe(opts)}`);
  const end = Date.now() + opts.deadlineMs;
  for (let attempts = 1; ; attempts++) {
    opts.signal?.throwIfAborted();
    const remaining = end - Date.now();
    try {
      return await attempt(opts, expected, Math.max(1_000, Math.min(remaining, ATTEMPT_MS)));
    } catch (err) {
      if (err instanceof SshFailure) throw err;
      const e = err as Error & { code?: string };
      if (!retryable(e)) throw new SshFailure("unreachable", `SSH to ${describe(opts)} failed: ${e.message}`);
      if (Date.now() + 250 >= end) {
        throw new SshFailure(
          "unreachable",
          `no SSH answer from ${describe(opts)} within ${opts.deadlineMs / 1000}s (${attempts} attempts)`,
          [`last error: ${e.message}`],
        );
      }
    }
    await sleep(Math.min(250 * attempts, 1_000), undefined, opts.signal ? { signal: opts.signal } : {});
  }
}

/** A public key blob's type, its first SSH string ("ssh-ed25519"). */
const keyType = (blob: Buffer) => blob.subarray(4, 4 + blob.readUInt32BE(0)).toString();

/** The host key algorithms that present one of `blobs` (an RSA key signs in three ways). */
function hostKeyAlgorithms(blobs: readonly Buffer[]): string[] {
  const types = blobs.map(keyType);
  return [
    ...new Set(types.flatMap((t) => (t === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [t]))),
  ];
}

async function attempt(
  opts: SshConnectOptions,
  expected: readonly Buffer[],
  readyTimeout: number,
): Promise<SshLink> {
  const sock = await openSocket(opts);
  return new Promise<SshLink>((resolve, reject) => {
    const client = new Client();
    let presented: Buffer | undefined;
    const fail = (err: Error) => {
      client.removeAllListeners();
      client.on("error", () => undefined); // late errors of a dead attempt
      client.end();
      const got = presented;
      if (got && !expected.some((k) => k.equals(got))) {
        reject(
          new SshFailure(
            "host-key",
            `the SSH server at ${describe(opts)} is not the one expected: its host key differs`,
            [
              ...[opts.hostKey].flat().map((k) => `expected: ${k.trim()}`),
              `got:      ${keyType(got)} key of ${got.length} bytes`,
            ],
          ),
        );
      } else if (/no matching host key format/.test(err.message)) {
        reject(
          new SshFailure(
            "host-key",
            `the SSH server at ${describe(opts)} has no host key of the pinned type (${hostKeyAlgorithms(expected).join(", ")})`,
            [err.message],
          ),
        );
      } else if (/authentication methods failed/.test(err.message)) {
        reject(new SshFailure("auth", `the SSH server at ${describe(opts)} refused our key`, [err.message]));
      } else {
        reject(err);
      }
    };
    client.once("error", fail);
    client.once("close", () => fail(new Error("connection closed before ready")));
    client.once("ready", () => {
      client.removeAllListeners();
      resolve(new SshLink(client, describe(opts), sock));
    });
    client.connect({
      sock,
      username: opts.username ?? "root",
      // Straight to our key: a "none" request first is one more round trip.
      authHandler: ["publickey"],
      privateKey: opts.privateKey,
      readyTimeout,
      // Notices a guest that vanished without a FIN (kexec, panic) within ~15 s.
      keepaliveInterval: KEEPALIVE_MS,
      keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      algorithms: { serverHostKey: hostKeyAlgorithms(expected) as ssh2.ServerHostKeyAlgorithm[] },
      hostVerifier: (key: Buffer) => {
        presented = key;
        return expected.some((k) => k.equals(key));
      },
    });
  });
}

/**
 * The connected socket for ssh2. TCP gets TCP_NODELAY: with Nagle on, each small SSH packet
 * waits for the guest's delayed ACK, ~40 ms a round trip through QEMU's user network (a
 * connection took 280 ms and a command 110 ms under TCG; without Nagle, 90 and 30).
 */
function openSocket(opts: SshTarget): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s =
      "socketPath" in opts
        ? netConnect(opts.socketPath)
        : netConnect({ host: opts.host, port: opts.port, noDelay: true });
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}
