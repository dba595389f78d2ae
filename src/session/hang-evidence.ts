// What a guest that went quiet during a kexec was doing, asked of it before it is killed. A
// kexec that never starts looks the same on the console whether the old kernel is stuck in
// its reboot path, the trigger never reached the guest, or the vCPUs stopped: the old kernel's
// SSH link, its tasks' kernel stacks and QEMU's view of the vCPUs tell them apart.
import { setTimeout as sleep } from "node:timers/promises";
import { symbolize, type SymbolTable } from "../kernel/symbols.js";
import { programCounters, type Vm } from "../vm/qemu.js";
import type { SshLink } from "../vm/ssh.js";

/**
 * Runnable and blocked tasks, and the guest agent whatever its state (waiting on stdin means the
 * trigger never reached it), with their kernel stacks; then SysRq-w (blocked tasks) and SysRq-l
 * (every CPU's backtrace) into the console. Busybox sh only: the guest has nothing else.
 */
export const TASK_SNAPSHOT = [
  "for d in /proc/[0-9]*; do",
  '  s=$(sed -n "s/^State:[[:space:]]*//p" $d/status 2>/dev/null); c=$(cat $d/comm 2>/dev/null)',
  '  case "$s:$c" in D*|R*|*:kho-agent) echo "pid ${d#/proc/} $c $s"; sed "s/^/    /" $d/stack 2>/dev/null | head -16;; esac',
  "done",
  "echo w >/proc/sysrq-trigger; echo l >/proc/sysrq-trigger",
].join("\n");

const SNAPSHOT_DEADLINE_MS = 10_000;
/** Long enough for SysRq's backtraces to reach the serial console under TCG. */
const SYSRQ_SETTLE_MS = 2_000;

/** Evidence lines for a guest whose console went silent (or ran out of time) mid-kexec. */
export async function kexecHangEvidence(
  vm: Vm,
  oldLink: SshLink,
  symbols?: () => Promise<SymbolTable | undefined>,
): Promise<string[]> {
  const lines: string[] = [];
  const status = await vm.qmp.queryStatus().catch(() => undefined);
  lines.push(`QEMU: ${status ? `guest state ${status.status}` : "QMP does not answer"}`);
  const mark = vm.console.mark();
  const answer = await oldLink
    .exec(TASK_SNAPSHOT, { deadlineMs: SNAPSHOT_DEADLINE_MS })
    .then((r) => ({ ok: true as const, stdout: r.stdout }))
    .catch((err: unknown) => ({ ok: false as const, why: err instanceof Error ? err.message : String(err) }));
  if (answer.ok) {
    lines.push("the old kernel still answers SSH (no kexec started); its running and blocked tasks:");
    lines.push(
      ...answer.stdout
        .trimEnd()
        .split("\n")
        .map((l) => `  ${l}`),
    );
    await sleep(SYSRQ_SETTLE_MS);
    const sysrq = vm.console.linesSince(mark);
    if (sysrq.length > 0)
      lines.push("SysRq w and l on the console:", ...sysrq.slice(0, 80).map((l) => `  ${l}`));
  } else {
    lines.push(`the old kernel does not answer SSH either: ${answer.why.split("\n")[0] ?? ""}`);
  }
  lines.push(...(await vcpuPointers(vm, await symbols?.().catch(() => undefined))));
  return lines;
}

/**
 * The running boot's `_text` from the init's ready line, if it printed one: `text=` directly,
 * or `stext=` (arm64's kallsyms has no `_text`) moved by the link-time distance of the two.
 */
export function runtimeText(console: readonly string[], table?: SymbolTable): bigint | undefined {
  for (let i = console.length - 1; i >= 0; i--) {
    const line = console[i] ?? "";
    if (!/KHO-GUEST: ready boot_id=/.test(line)) continue;
    const m = / (s?)text=([0-9a-f]+)\b/.exec(line);
    if (!m?.[2]) return undefined;
    const addr = BigInt(`0x${m[2]}`);
    if (!m[1]) return addr;
    return table?.stext === undefined ? undefined : addr - table.stext + table.text;
  }
  return undefined;
}

/**
 * Each vCPU's program counter from QEMU's monitor: where a frozen guest sits, named against the
 * kernel's System.map when there is one (`CPU0 pc=ffff... (multi_cpu_stop+0x94)`).
 */
async function vcpuPointers(vm: Vm, symbols: SymbolTable | undefined): Promise<string[]> {
  const text = await vm.qmp.humanMonitorCommand("info registers -a").catch(() => "");
  const base =
    symbols &&
    runtimeText(
      vm.console.entriesSince(0).map((l) => l.text),
      symbols,
    );
  const pcs = programCounters(vm.arch, text).map((pc, i) => {
    const name = symbols && base !== undefined ? symbolize(symbols, base, BigInt(`0x${pc}`)) : undefined;
    return `CPU${i} pc=${pc}${name ? ` (${name})` : ""}`;
  });
  return pcs.length ? [`vCPUs: ${pcs.join(", ")}`] : [];
}
