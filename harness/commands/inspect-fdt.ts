import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { ElfReader } from "../../src/elf/reader.js";
import { HarnessError } from "../../src/errors.js";
import { decodeKho, formatKhoTree, toJson } from "../../src/kho/abi.js";
import { action } from "../cli-support.js";

export function registerInspectFdt(program: Command): void {
  program
    .command("inspect-fdt <fdt>")
    .description(
      "decode a KHO root FDT (debugfs kho/in/fdt); with --vmcore also the radix tree and sub-blobs",
    )
    .option("--vmcore <dump>", "QEMU dump-guest-memory ELF taken before the kexec")
    .option("--json", "machine-readable output")
    .action(
      action(async (file: string, opts: { vmcore?: string; json?: boolean }) => {
        const blob = await readFile(file).catch(() => {
          throw new HarnessError(`cannot read ${file}`);
        });
        const elf = opts.vmcore ? await ElfReader.open(opts.vmcore) : undefined;
        try {
          const decoded = await decodeKho(blob, elf ? { memory: elf, isRam: (p) => elf.isMapped(p) } : {});
          process.stdout.write(
            opts.json ? JSON.stringify(toJson(decoded), null, 2) + "\n" : formatKhoTree(decoded) + "\n",
          );
        } finally {
          await elf?.close();
        }
      }),
    );
}
