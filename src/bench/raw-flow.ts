// The raw flow of the kernel's KHO selftest (tools/testing/selftests/kho/vmtest.sh) on the
// harness's kernel and QEMU launcher: the selftest's nolibc init kexecs the kernel it finds in
// its initrd with KHO on; the second kernel's test_kho prints "KHO restore succeeded", then
// panics for want of a root fs and QEMU exits (panic=-1, -no-reboot), as in vmtest.sh.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import type { CachedKernel } from "../kernel/cache.js";
import type { Logger } from "../util/log.js";
import { GuestFault } from "../vm/fault.js";
import { launchVm, type Accel, type Vm } from "../vm/qemu.js";
import { guestMarks } from "./console-marks.js";
import { buildSelftestInit, selftestInitrd } from "./selftest-init.js";
import { phasesBetween } from "./stats.js";

/** The phases of one raw run, in order; `total` is their sum. */
export const RAW_PHASES = ["build", "boot", "first kernel", "kexec", "restore", "exit"] as const;

const BANNER = /Linux version \d/;
const KEXEC = /kexec_core: Starting new kernel/;
const SUCCESS = /KHO restore succeeded/;
/** Under TCG on a loaded 2-core host. */
const RUN_DEADLINE_MS = 300_000;
const SILENCE_MS = 90_000;
const EXIT_DEADLINE_MS = 60_000;

export interface FlowSample {
  readonly ok: boolean;
  readonly error?: string;
  readonly evidence?: readonly string[];
  /** Host wall time per phase, ms. */
  readonly phaseMs: Record<string, number>;
  readonly totalMs: number;
  /** printk times of marker lines per boot (see console-marks.ts). */
  readonly guestMs: Record<string, number>;
  /** 1-minute load average when the sample started (other guests, builds). */
  readonly load: number;
}

export interface RawFlowOptions {
  readonly arch: ArchName;
  readonly kernel: CachedKernel;
  readonly accel: Accel;
  /** Scratch folder for the initrd and the console logs. */
  readonly workDir: string;
  /** Extra kernel parameters (experiments); vmtest.sh's own are console=, kho=on, panic=-1. */
  readonly append?: string;
  readonly log: Logger;
  readonly load: () => number;
}

export async function runRawFlow(opts: RawFlowOptions): Promise<FlowSample> {
  const load = opts.load();
  const t0 = performance.now();
  const marks: [string, number][] = [["build", t0]];
  const lines: string[] = [];
  let vm: Vm | undefined;
  try {
    const m = opts.kernel.manifest;
    const init = await buildSelftestInit({
      arch: opts.arch,
      sourceTree: m.sourceTree,
      uapiInclude: join(opts.kernel.dir, m.headersDir, "include"),
    });
    const initrd = join(opts.workDir, "initrd.cpio");
    const [initBytes, kernelBytes] = await Promise.all([
      readFile(init.path),
      readFile(opts.kernel.imagePath),
    ]);
    await writeFile(initrd, selftestInitrd(initBytes, kernelBytes));

    marks.push(["boot", performance.now()]);
    vm = await launchVm({
      arch: opts.arch,
      accel: opts.accel,
      memoryMiB: 1024,
      smp: 2,
      name: `kho-bench-raw-${opts.arch}`,
      logDir: opts.workDir,
      boot: {
        kind: "kernel",
        kernel: opts.kernel.imagePath,
        initrd,
        // vmtest.sh: "console=<tty> kho=on panic=-1" (launchVm puts console= and panic=-1).
        kho: false,
        append: ["kho=on", opts.append ?? ""].join(" ").trim(),
      },
    });
    const seen = { banner: 0, kexec: false };
    vm.console.onLine((l) => {
      lines.push(l.text);
      const now = performance.now();
      if (BANNER.test(l.text)) {
        seen.banner += 1;
        if (seen.banner === 1) marks.push(["first kernel", now]);
        if (seen.banner === 2) marks.push(["restore", now]);
      } else if (KEXEC.test(l.text) && !seen.kexec) {
        seen.kexec = true;
        marks.push(["kexec", now]);
      } else if (SUCCESS.test(l.text) && !marks.some(([n]) => n === "exit")) {
        marks.push(["exit", now]);
      }
    });
    await vm.console.waitFor(SUCCESS, {
      since: 0,
      deadlineMs: RUN_DEADLINE_MS,
      silenceMs: SILENCE_MS,
      step: "KHO selftest (vmtest.sh flow)",
    });
    // vmtest.sh greps the serial log once QEMU has exited: wait for that too.
    const exited = await Promise.race([
      vm.exited.then(() => true),
      sleep(EXIT_DEADLINE_MS, false, { ref: false }),
    ]);
    if (!exited)
      throw new HarnessError(`QEMU did not exit within ${EXIT_DEADLINE_MS / 1000}s after the test`);
    marks.push(["end", performance.now()]);
    const names = marks.map(([n]) => n).join(",");
    if (names !== [...RAW_PHASES, "end"].join(",")) {
      throw new HarnessError(`the console did not show the expected sequence of boots (${names})`);
    }
    const phaseMs = phasesBetween(marks);
    return {
      ok: true,
      phaseMs,
      totalMs: Math.round(performance.now() - t0),
      guestMs: guestMarks(lines),
      load,
    };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const evidence =
      err instanceof GuestFault
        ? err.excerpt
        : err instanceof HarnessError
          ? err.evidence
          : (vm?.console.lastLines(15) ?? []);
    opts.log(`#   raw flow failed: ${e.message}`);
    return {
      ok: false,
      error: e.message,
      evidence,
      phaseMs: phasesBetween(marks),
      totalMs: Math.round(performance.now() - t0),
      guestMs: guestMarks(lines),
      load,
    };
  } finally {
    await vm?.stop(1_000);
  }
}
