import type { Command } from "commander";
import type { ArchName } from "../../src/arch.js";
import { inspectKernel, formatReport, reportToJson } from "../../src/kernel/inspect.js";
import { action, archOption } from "../cli-support.js";

export function registerInspect(kernel: Command): void {
  kernel
    .command("inspect <file>")
    .description("read a kernel image's header and embedded config; say whether it can run KHO scenarios")
    .option("--arch <arch>", "the arch you mean to boot it on (a mismatch is an error)", archOption)
    .option("--json", "machine-readable output")
    .action(
      action(async (file: string, opts: { arch?: ArchName[]; json?: boolean }) => {
        const report = await inspectKernel(file, { expectArch: opts.arch?.[0] });
        process.stdout.write(
          opts.json ? JSON.stringify(reportToJson(report), null, 2) + "\n" : formatReport(report) + "\n",
        );
        return report.ready ? 0 : 1;
      }),
    );
}
