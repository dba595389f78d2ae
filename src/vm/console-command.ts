// A user's console command (`ipmitool ... sol activate`, a `socat` to a serial server) as a child
// of the harness: run in a shell of its own process group, registered with the reaper (so an
// interrupted run does not leave it behind), ended with its whole group.
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable } from "node:stream";
import { endProcessGroup } from "../util/process-group.js";
import { trackProcess } from "./reaper.js";

export interface ConsoleCommand {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  /** Ends the command's process group (1 s for SIGTERM, then SIGKILL). */
  readonly end: () => Promise<void>;
}

export function startConsoleCommand(command: string): ConsoleCommand {
  const child = spawn("bash", ["-c", command], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const pid = child.pid;
  const untrack = pid !== undefined ? trackProcess(-pid, "console command", "SIGTERM") : () => false;
  return {
    child,
    end: async () => {
      if (pid !== undefined) await endProcessGroup(pid, 1_000);
      untrack();
    },
  };
}
