// Whether a console command shows the machine's console: a line with a fresh nonce written to
// its /dev/kmsg over SSH must come out of the command.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { scaled } from "../util/deadline.js";
import { startConsoleCommand } from "../vm/console-command.js";
import type { SshLink } from "../vm/ssh.js";

/** The console command's test: did a line written to the machine's /dev/kmsg come out of it? */
export interface ConsoleProbe {
  readonly command: string;
  readonly seen: boolean;
  /** From the first write to the line coming out (or to the deadline). */
  readonly ms: number;
  /** How many probe lines were written (one every PROBE_EVERY_MS until one came out). */
  readonly writes: number;
  /** The command's last lines, as evidence. */
  readonly tail: readonly string[];
}

const PROBE_DEADLINE_MS = 10_000;
const PROBE_EVERY_MS = 2_000;

/**
 * Runs the console command (`ipmitool ... sol activate`, a `socat` to a serial server) and writes
 * a line with a fresh nonce to the machine's /dev/kmsg over SSH until it comes out of the
 * command: proof that the command shows this machine's console. The line is KERN_ERR, so a
 * console under `quiet` prints it; it is written again every 2 s, for a command that takes a
 * while to attach. The command's process group is ended afterwards.
 */
export async function probeConsole(link: SshLink, command: string): Promise<ConsoleProbe> {
  const nonce = randomUUID();
  const { child, end } = startConsoleCommand(command);
  let text = "";
  const started = performance.now();
  const deadline = started + scaled(PROBE_DEADLINE_MS);
  let writes = 0;
  try {
    const seen = new Promise<boolean>((resolve) => {
      const look = () => text.includes(nonce) && resolve(true);
      child.stdout.on("data", (d: Buffer) => {
        text = (text + d.toString()).slice(-65_536); // a console can print for ever
        look();
      });
      child.stderr.on("data", (d: Buffer) => (text = (text + d.toString()).slice(-65_536)));
      child.on("error", () => resolve(false));
      child.on("close", () => resolve(text.includes(nonce)));
    });
    let found = false;
    while (!found && performance.now() < deadline) {
      writes++;
      await link.exec(`echo '<3>kho-harness: console probe ${nonce}' > /dev/kmsg`, {
        deadlineMs: scaled(30_000),
      });
      const wait = Math.min(PROBE_EVERY_MS, Math.max(0, deadline - performance.now()));
      found = await Promise.race([seen, sleep(wait).then(() => false)]);
    }
    return {
      command,
      seen: found,
      ms: Math.round(performance.now() - started),
      writes,
      tail: text.trimEnd().split("\n").slice(-5),
    };
  } finally {
    await end();
  }
}
