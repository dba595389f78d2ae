// `kho bench handover`: what a handover costs the kernel as preserved memory grows, on one kernel
// or two (A/B). The logic is src/bench/handover.ts; this file is its command line and its files.
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { DEFAULT_REPEAT, DEFAULT_SIZES, parseSizes, runHandoverBench } from "../../src/bench/handover.js";
import {
  formatHandoverMarkdown,
  formatHandoverText,
  handoverChart,
  renderHandoverHtml,
} from "../../src/bench/handover-format.js";
import { HANDOVER_SHAPES, type HandoverShape } from "../../src/bench/handover-types.js";
import { sizeArg } from "../../src/scenarios/handover-cost.js";
import { DEFAULT_MIN_EFFECT, DEFAULT_MIN_EFFECT_MS } from "../../src/bench/interval.js";
import { BAD_INPUT_EXIT } from "../../src/report/schema.js";
import { stderrLogger } from "../../src/util/log.js";
import { action, archOption, intOption } from "../cli-support.js";

interface HandoverCli {
  arch: ArchName[];
  kernel: string;
  append?: string;
  compareKernel?: string;
  compareAppend?: string;
  sizes: string;
  shape: string;
  repeat: number;
  minEffect: string;
  minEffectMs: string;
  jobs: number;
  out?: string;
}

function shapes(text: string): HandoverShape[] {
  return text.split(",").map((s) => {
    const shape = s.trim();
    if (!(HANDOVER_SHAPES as readonly string[]).includes(shape))
      throw new HarnessError(
        `--shape: no shape "${shape}" (there are: ${HANDOVER_SHAPES.join(", ")})`,
        [],
        BAD_INPUT_EXIT,
      );
    return shape as HandoverShape;
  });
}

function minEffect(text: string): number {
  const v = Number(text);
  if (!(v >= 0 && v < 1))
    throw new HarnessError(`--min-effect: expected 0..1, got "${text}"`, [], BAD_INPUT_EXIT);
  return v;
}

function minEffectMs(text: string): number {
  const v = Number(text);
  if (!(v >= 0))
    throw new HarnessError(`--min-effect-ms: expected ms >= 0, got "${text}"`, [], BAD_INPUT_EXIT);
  return v;
}

export function registerBench(program: Command): void {
  const bench = program.command("bench").description("measure the kernel's handover");
  bench
    .command("handover")
    .description(
      "blackout phases and memory overhead of a handover as preserved memory grows (per arch: table, chart, fitted slopes); with --compare-kernel, a verdict per phase between two kernels",
    )
    .option("--arch <arch>", "x86_64, arm64 or all", archOption, [...ARCH_NAMES])
    .option(
      "--kernel <kernel>",
      "kernel A: 'default' (the harness's build), a variant name, or an image",
      "default",
    )
    .option("--append <params>", "extra kernel parameters for kernel A")
    .option("--compare-kernel <kernel>", "kernel B, as --kernel; B is run interleaved with A")
    .option("--compare-append <params>", "extra kernel parameters for kernel B (e.g. a slower handover)")
    .option(
      "--sizes <list>",
      "bytes preserved, one kexec each (K, M, G suffixes)",
      DEFAULT_SIZES.map(sizeArg).join(","),
    )
    .option("--shape <shapes>", `what is preserved: ${HANDOVER_SHAPES.join(", ")} (a list)`, "memfd")
    .option("--repeat <n>", "guests per arch, shape and kernel", intOption, DEFAULT_REPEAT)
    .option("--min-effect <f>", "a ratio within 1 ± f is 'no difference'", String(DEFAULT_MIN_EFFECT))
    .option(
      "--min-effect-ms <ms>",
      "so is a difference of the medians under this many ms a size",
      String(DEFAULT_MIN_EFFECT_MS),
    )
    .option(
      "--jobs <n>",
      "guests at once (default 1: timings undisturbed; 2 halves the wall time)",
      intOption,
      1,
    )
    .option("--out <dir>", "figures, charts and every guest's artifacts (default out/bench/<time>)")
    .action(
      action(async (opts: HandoverCli) => {
        const sizes = parseSizes(opts.sizes);
        const shapeList = shapes(opts.shape);
        const effect = minEffect(opts.minEffect);
        const effectMs = minEffectMs(opts.minEffectMs);
        const compare = opts.compareKernel ?? (opts.compareAppend ? opts.kernel : undefined);
        const out = resolve(opts.out ?? join("out", "bench", new Date().toISOString().replace(/[:.]/g, "-")));
        const report = await runHandoverBench({
          arches: opts.arch,
          shapes: shapeList,
          sizes,
          repeat: opts.repeat,
          a: { spec: opts.kernel, ...(opts.append ? { append: opts.append } : {}) },
          ...(compare
            ? { b: { spec: compare, ...(opts.compareAppend ? { append: opts.compareAppend } : {}) } }
            : {}),
          minEffect: effect,
          minEffectMs: effectMs,
          outDir: join(out, "guests"),
          jobs: opts.jobs,
          log: stderrLogger,
        });
        await mkdir(out, { recursive: true });
        await writeFile(join(out, "bench-handover.json"), JSON.stringify(report, null, 2) + "\n");
        await writeFile(join(out, "summary.md"), formatHandoverMarkdown(report));
        await writeFile(join(out, "summary.html"), renderHandoverHtml(report));
        for (const f of report.figures.filter((x) => x.kernel === "A")) {
          const b = report.figures.find((x) => x.kernel === "B" && x.arch === f.arch && x.shape === f.shape);
          await writeFile(
            join(out, `chart-${f.arch}-${f.shape}.svg`),
            handoverChart(f, b ? { compare: b } : {}),
          );
        }
        process.stdout.write(`${formatHandoverText(report)}\n\nfigures: ${out}/summary.html\n`);
        return report.failures.length ? 1 : 0;
      }),
    );
}
