// The `kho` command: parse, call the library, print. Nothing else lives here.
import { Command } from "commander";
import { registerDoctor } from "./commands/doctor.js";
import { registerKernel } from "./commands/kernel.js";

const program = new Command("kho")
  .description("end-to-end tests for Kexec HandOver (KHO) and the Live Update Orchestrator (LUO) on QEMU guests")
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(`kho: ${text.replace(/^error: /, "")}`) });

registerDoctor(program);
registerKernel(program);

await program.parseAsync(process.argv);
