// The `kho` command line: every command and option, built without side effects (kho.ts runs it;
// tests check commands against it, see test/unit/ci-examples.test.ts).
import { Command } from "commander";
import { reportError } from "./cli-support.js";
import { parseTimeoutFactor, TIMEOUT_FACTOR_ENV, timeoutFactor } from "../src/util/deadline.js";
import { registerBench } from "./commands/bench.js";
import { registerDoctor } from "./commands/doctor.js";
import { registerInspectFdt } from "./commands/inspect-fdt.js";
import { registerKernel } from "./commands/kernel.js";
import { registerReport } from "./commands/report.js";
import { registerRun } from "./commands/run.js";
import { registerTarget } from "./commands/target.js";

export function buildProgram(): Command {
  const program = new Command("kho")
    .description(
      "end-to-end tests for Kexec HandOver (KHO) and the Live Update Orchestrator (LUO) on QEMU guests",
    )
    .option(
      "--timeout-factor <f>",
      `multiply every guest, scenario and build deadline by f (slow or busy hosts, debug kernels; also ${TIMEOUT_FACTOR_ENV})`,
    )
    .hook("preAction", (root) => {
      try {
        const given = root.opts<{ timeoutFactor?: string }>().timeoutFactor;
        // In the environment, so the harness's own children scale the same way.
        if (given !== undefined)
          process.env[TIMEOUT_FACTOR_ENV] = String(parseTimeoutFactor(given, "--timeout-factor"));
        timeoutFactor();
      } catch (e) {
        process.exit(reportError(e));
      }
    })
    .showHelpAfterError()
    .configureOutput({ outputError: (text, write) => write(`kho: ${text.replace(/^error: /, "")}`) });

  registerDoctor(program);
  registerKernel(program);
  registerInspectFdt(program);
  registerRun(program);
  registerReport(program);
  registerBench(program);
  registerTarget(program);
  return program;
}
