// Ending a build's process group: SIGTERM first, so that GNU make deletes the target it was
// writing (a SIGKILL leaves it half-written, and the next build trusts it), then SIGKILL for
// whatever did not go within the grace time.
import { setTimeout as sleep } from "node:timers/promises";

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function endProcessGroup(pgid: number, graceMs = 5_000): Promise<void> {
  try {
    process.kill(-pgid, "SIGTERM");
  } catch {
    return; // already gone
  }
  for (let waited = 0; waited < graceMs && groupAlive(pgid); waited += 100) await sleep(100);
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // gone
  }
}
