import type { Command } from "commander";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { buildKernel, defaultJobs, parseBase } from "../../src/kernel/build.js";
import { cleanKernels, listKernels } from "../../src/kernel/cache.js";
import {
  debianKernelSource,
  DEFAULT_SERIES,
  patchedSource,
  userKernelSource,
  type KernelSource,
} from "../../src/kernel/source.js";
import { kernelVariant, VARIANT_HELP, variantFiles } from "../../src/kernel/variants.js";
import { formatDuration, stderrLogger } from "../../src/util/log.js";
import { action, archOption, BASE_HELP, collect, intOption } from "../cli-support.js";
import { registerInspect } from "./kernel-inspect.js";

interface BuildOptions {
  arch: ArchName[];
  src?: string;
  series?: string;
  fragment: string[];
  patch: string[];
  variant?: string;
  base?: string;
  jobs?: number;
}

export async function resolveSource(opts: { src?: string; series?: string }): Promise<KernelSource> {
  if (opts.src && opts.series)
    throw new HarnessError("--src and --series exclude each other: a tree has its own version");
  return opts.src ? userKernelSource(opts.src) : debianKernelSource(opts.series, stderrLogger);
}

export function registerKernel(program: Command): void {
  const kernel = program.command("kernel").description("build, cache and inspect KHO-enabled kernels");

  kernel
    .command("build")
    .description("build a KHO/LUO kernel (Debian's linux-source by default, or your tree with --src)")
    .option("--arch <arch>", "x86_64, arm64 or all", archOption, [...ARCH_NAMES])
    .option("--src <dir>", "your kernel tree, built out of tree (it stays clean)")
    .option("--series <x.y>", `Debian linux-source series (default ${DEFAULT_SERIES})`)
    .option("--fragment <file>", "extra config fragment merged on top (repeatable)", collect, [])
    .option("--patch <file>", "a patch applied to the source first (-p1, repeatable)", collect, [])
    .option("--variant <name>", VARIANT_HELP)
    .option("--base <base>", BASE_HELP)
    .option("--jobs <n>", `parallel make jobs (default ${defaultJobs()})`, intOption)
    .action(
      action(async (opts: BuildOptions) => {
        const variant = opts.variant ? variantFiles(kernelVariant(opts.variant)) : undefined;
        const source = await patchedSource(
          await resolveSource(opts),
          [...(variant?.patches ?? []), ...opts.patch],
          stderrLogger,
        );
        const rows: string[] = [];
        for (const arch of opts.arch) {
          const r = await buildKernel({
            arch,
            source,
            userFragments: [...(variant?.fragments ?? []), ...opts.fragment],
            ...(opts.base ? { base: parseBase(opts.base) } : {}),
            jobs: opts.jobs,
            log: stderrLogger,
          });
          const m = r.kernel.manifest;
          const how = r.cached
            ? `cache hit (${formatDuration(r.ms)})`
            : `built in ${formatDuration(r.ms)}, ${m.cpuSeconds} CPU s, ${m.objectCount} objects`;
          rows.push(
            `${arch.padEnd(7)} ${m.kernelRelease.padEnd(14)} ${how.padEnd(22)} ${r.kernel.imagePath}`,
          );
        }
        process.stdout.write(rows.join("\n") + "\n");
      }),
    );

  kernel
    .command("list")
    .description("show the kernel cache")
    .option("--json", "machine-readable output")
    .action(
      action(async (opts: { json?: boolean }) => {
        const entries = await listKernels();
        if (opts.json) {
          process.stdout.write(JSON.stringify(entries, null, 2) + "\n");
          return;
        }
        if (entries.length === 0) {
          process.stdout.write("kernel cache is empty (run 'kho kernel build')\n");
          return;
        }
        for (const { key, lookup } of entries) {
          if (lookup.state !== "hit") {
            process.stdout.write(
              `${key}  (${lookup.state === "corrupt" ? `not trusted, will be rebuilt: ${lookup.reason}` : "missing"})\n`,
            );
            continue;
          }
          const m = lookup.kernel.manifest;
          process.stdout.write(
            `${key}  ${m.arch.padEnd(7)} ${m.kernelRelease.padEnd(14)} ${m.sourceIdentity}, base ${m.base}  built ${m.builtAt} in ${formatDuration(m.wallMs)} (${m.cpuSeconds} CPU s, ${m.objectCount} objects)\n` +
              `${" ".repeat(18)}${lookup.kernel.imagePath}\n`,
          );
        }
      }),
    );

  kernel
    .command("clean")
    .description("empty the kernel cache (built kernels and build directories; downloads are kept)")
    .action(
      action(async () => {
        for (const dir of await cleanKernels()) process.stdout.write(`removed ${dir}\n`);
      }),
    );

  registerInspect(kernel);
}
