// The `kho` command: parse, call the library, print. Nothing else lives here.
import { installCleanExit } from "./cli-support.js";
import { buildProgram } from "./program.js";

installCleanExit();
await buildProgram().parseAsync(process.argv);
