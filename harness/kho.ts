// The `kho` command: parse, call the library, print. Nothing else lives here.
import { Command } from "commander";
import { installCleanExit } from "./cli-support.js";
import { registerDoctor } from "./commands/doctor.js";
import { registerInspectFdt } from "./commands/inspect-fdt.js";
import { registerKernel } from "./commands/kernel.js";
import { registerReport } from "./commands/report.js";
import { registerRun } from "./commands/run.js";

installCleanExit();

const program = new Command("kho")
  .description(
    "end-to-end tests for Kexec HandOver (KHO) and the Live Update Orchestrator (LUO) on QEMU guests",
  )
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(`kho: ${text.replace(/^error: /, "")}`) });

registerDoctor(program);
registerKernel(program);
registerInspectFdt(program);
registerRun(program);
registerReport(program);

await program.parseAsync(process.argv);
