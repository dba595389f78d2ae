import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { ElfReader } from "../../src/elf/reader.js";
import { DecodeError, HarnessError } from "../../src/errors.js";
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
        const blob = await readFile(file).catch((e: Error) => {
          throw new HarnessError(`cannot read ${file}: ${e.message}`);
        });
        const elf = opts.vmcore
          ? await ElfReader.open(opts.vmcore).catch((e: unknown) => {
              if (e instanceof DecodeError)
                throw new HarnessError(`${opts.vmcore} is not a usable vmcore: ${e.message}`);
              throw e;
            })
          : undefined;
        try {
          const decoded = await decodeKho(
            blob,
            elf ? { memory: elf, isRam: (p) => elf.isMapped(p) } : {},
          ).catch((e: unknown) => {
            if (!(e instanceof DecodeError)) throw e;
            const what = opts.vmcore ? `the KHO state in ${file} and ${opts.vmcore}` : `${file} as a KHO FDT`;
            throw new HarnessError(`cannot decode ${what}: ${e.message}`);
          });
          process.stdout.write(
            opts.json ? JSON.stringify(toJson(decoded), null, 2) + "\n" : formatKhoTree(decoded) + "\n",
          );
        } finally {
          await elf?.close();
        }
      }),
    );
}
