// QEMU must never outlive the harness: a child Node process launches a guest, then dies in
// various ways, and the QEMU it started must be gone.
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHILD = fileURLToPath(new URL("../fixtures/vm/leak-child.ts", import.meta.url));

function qemuMissing(): string | undefined {
  try {
    execFileSync("qemu-system-x86_64", ["--version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "qemu-system-x86_64 is not installed";
  }
}
const missing = qemuMissing();
if (missing) console.log(`skipping QEMU leak tests: ${missing}`);

/** Alive means running or sleeping: a zombie waiting for its reaper is already dead. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  const end = Date.now() + withinMs;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(pid);
}

const CASES = [
  { mode: "wait", kill: "SIGTERM", pdeathsig: false, exit: { signal: "SIGTERM" } },
  { mode: "wait", kill: "SIGINT", pdeathsig: false, exit: { signal: "SIGINT" } },
  { mode: "throw", kill: undefined, pdeathsig: false, exit: { exitCode: 1 } },
  { mode: "exit", kill: undefined, pdeathsig: false, exit: { exitCode: 3 } },
  // SIGKILL cannot be handled: only the kernel's parent-death signal ends QEMU then.
  { mode: "wait", kill: "SIGKILL", pdeathsig: true, exit: { signal: "SIGKILL" } },
] as const;

describe.skipIf(missing)("no QEMU outlives the harness", () => {
  it.concurrent.each(CASES)("$mode, $kill, pdeathsig $pdeathsig", async ({ mode, kill, pdeathsig, exit }) => {
    const child = execa(
      process.execPath,
      ["--import", "tsx", CHILD, mode, pdeathsig ? "pdeathsig" : "no-pdeathsig"],
      {
        cwd: ROOT,
        reject: false,
      },
    );
    const { pid, dirs } = await new Promise<{ pid: number; dirs: string[] }>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        const line = /^(\{.*\})\n/m.exec(out)?.[1];
        if (line) resolve(JSON.parse(line) as { pid: number; dirs: string[] });
      });
      void child.then((r) => reject(new Error(`child ended before launching: ${r.stderr}`)));
    });
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toContain("kho-leak-test");
    if (kill) child.kill(kill);
    const r = await child;
    expect(r).toMatchObject(exit);
    expect(await gone(pid, 3_000)).toBe(true);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
});
