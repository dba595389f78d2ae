// A small typed QMP client over a unix socket. Hand-written (see NPM-CHOICES §2): the harness
// needs a handful of commands, and QEMU serves one client per QMP socket, so this owns the socket.
import { EventEmitter } from "node:events";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { scaled } from "../util/deadline.js";

/** A command QEMU refused; `qmpClass` is QMP's error class (GenericError, CommandNotFound...). */
export class QmpError extends Error {
  override readonly name = "QmpError";
  constructor(
    readonly command: string,
    readonly qmpClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${qmpClass}: ${desc}`);
  }
}

export interface QmpEvent {
  readonly event: string;
  readonly data: Record<string, unknown>;
  readonly timestamp: { seconds: number; microseconds: number };
}

/** QEMU's RunState (qapi/run-state.json). */
export type RunState =
  | "debug"
  | "inmigrate"
  | "internal-error"
  | "io-error"
  | "paused"
  | "postmigrate"
  | "prelaunch"
  | "finish-migrate"
  | "restore-vm"
  | "running"
  | "save-vm"
  | "shutdown"
  | "suspended"
  | "watchdog"
  | "guest-panicked"
  | "colo";

export interface StatusInfo {
  readonly running: boolean;
  readonly status: RunState;
}

export interface DumpOptions {
  /** ELF by default; kdump formats are what `crash` prefers. */
  readonly format?: "elf" | "kdump-zlib" | "kdump-lzo" | "kdump-snappy" | "kdump-raw-zlib";
  /** How long to wait for DUMP_COMPLETED (a duration in ms). */
  readonly deadlineMs?: number;
}

interface Pending {
  readonly command: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

export class QmpClient {
  private readonly pending = new Map<string, Pending>();
  private readonly events = new EventEmitter();
  private nextId = 1;
  private buffered = "";
  private closed: Error | undefined;
  private quitting = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("error", (err) => this.onClose(err));
    socket.on("close", () => this.onClose(new Error("QMP connection closed")));
  }

  /**
   * Connects to QEMU's QMP socket, retrying until QEMU has created it (a duration `deadlineMs`),
   * reads the greeting and enters command mode. `signal` stops the retries (e.g. QEMU exited).
   */
  static async connect(path: string, opts: { deadlineMs: number; signal?: AbortSignal }): Promise<QmpClient> {
    const end = Date.now() + scaled(opts.deadlineMs);
    let socket: Socket;
    for (;;) {
      opts.signal?.throwIfAborted();
      try {
        socket = await openSocket(path);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== "ENOENT" && code !== "ECONNREFUSED") || Date.now() >= end) {
          throw new Error(`cannot connect to QMP at ${path}: ${(err as Error).message}`, { cause: err });
        }
        await sleep(50);
      }
    }
    const client = new QmpClient(socket);
    try {
      await client.waitGreeting(Math.max(end - Date.now(), 1000));
      await client.execute("qmp_capabilities");
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Sends a command and resolves with its `return` value (QEMU's JSON, trusted as typed `T`). */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(this.closed);
    if (this.quitting)
      return Promise.reject(new Error(`QMP ${command}: connection closed (QEMU was told to quit)`));
    const id = String(this.nextId++);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  /** Subscribes to an event by name (`*` for all); returns the unsubscribe function. */
  on(event: string, listener: (e: QmpEvent) => void): () => void {
    this.events.on(event, listener);
    return () => this.events.off(event, listener);
  }

  /** The next event named `name` within `deadlineMs` (subscribe before causing it). */
  waitEvent(name: string, given: number): Promise<QmpEvent> {
    const deadlineMs = scaled(given);
    return new Promise<QmpEvent>((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        off();
        this.events.off("close", onClose);
        fn();
      };
      const off = this.on(name, (e) => done(() => resolve(e)));
      const onClose = (err: Error) => done(() => reject(err));
      const timer = setTimeout(
        () => done(() => reject(new Error(`QMP event ${name} did not come within ${deadlineMs} ms`))),
        deadlineMs,
      );
      this.events.on("close", onClose);
    });
  }

  queryStatus(): Promise<StatusInfo> {
    return this.execute<StatusInfo>("query-status");
  }
  async stop(): Promise<void> {
    await this.execute("stop");
  }
  async cont(): Promise<void> {
    await this.execute("cont");
  }
  async systemReset(): Promise<void> {
    await this.execute("system_reset");
  }
  humanMonitorCommand(commandLine: string): Promise<string> {
    return this.execute<string>("human-monitor-command", { "command-line": commandLine });
  }
  /** Saves `size` bytes of guest-physical memory at `addr` to a host file. */
  async pmemsave(addr: bigint | number, size: number, path: string): Promise<void> {
    // QMP integers are JSON numbers; addresses above 2^53 do not occur in our guests' RAM.
    await this.execute("pmemsave", { val: Number(addr), size, filename: path });
  }

  /** Dumps guest memory to `path` (no paging, detached) and waits for DUMP_COMPLETED. */
  async dumpGuestMemory(path: string, opts: DumpOptions = {}): Promise<void> {
    const completed = this.waitEvent("DUMP_COMPLETED", opts.deadlineMs ?? 300_000);
    completed.catch(() => undefined); // observed below, or abandoned if the command fails
    await this.execute("dump-guest-memory", {
      paging: false,
      protocol: `file:${path}`,
      detach: true,
      ...(opts.format ? { format: opts.format } : {}),
    });
    const event = await completed;
    const error = event.data.error;
    if (typeof error === "string") throw new QmpError("dump-guest-memory", "DumpFailed", error);
  }

  /** Asks QEMU to exit. Resolves on the reply or when QEMU closes the socket first. */
  async quit(): Promise<void> {
    if (this.closed || this.quitting) return;
    const reply = this.execute("quit");
    // Later commands fail at once instead of racing QEMU's exit (EPIPE or no reply).
    this.quitting = true;
    await reply;
  }

  close(): void {
    this.socket.destroy();
  }

  private waitGreeting(deadlineMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no QMP greeting")), deadlineMs);
      this.events.once("greeting", () => {
        clearTimeout(timer);
        resolve();
      });
      this.events.once("close", (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf("\n")) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line) this.onMessage(parseJson(line));
    }
  }

  private onMessage(msg: unknown): void {
    if (!isRecord(msg)) return;
    if ("QMP" in msg) {
      this.events.emit("greeting");
    } else if (typeof msg.event === "string") {
      const event: QmpEvent = {
        event: msg.event,
        data: isRecord(msg.data) ? msg.data : {},
        timestamp: msg.timestamp as QmpEvent["timestamp"],
      };
      this.events.emit(msg.event, event);
      this.events.emit("*", event);
    } else if (typeof msg.id === "string") {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (isRecord(msg.error)) {
        p.reject(new QmpError(p.command, String(msg.error.class), String(msg.error.desc)));
      } else {
        p.resolve(msg.return);
      }
    }
  }

  private onClose(cause: Error): void {
    if (this.closed) return;
    const why = cause.message === "QMP connection closed" ? "" : ` (${cause.message})`;
    const err = new Error(`QMP connection closed${why}`, { cause });
    this.closed = err;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      // QEMU may close the socket before replying to `quit`: that is the success we asked for.
      if (this.quitting && p.command === "quit") p.resolve({});
      else p.reject(new Error(`QMP ${p.command}: ${err.message}`));
    }
    this.events.emit("close", err);
  }
}

/** QEMU only sends JSON on QMP; anything else is dropped rather than crashing the harness. */
function parseJson(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}
