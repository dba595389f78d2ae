// Kernel allocations preserved through the test module (guest/kmod): compound folios, DMA-style
// non-compound high-order blocks, and split pages. The module measures, in the next kernel,
// the pattern, the head's and every tail page's refcount and the compound state.
import { buildKmod } from "../guest/kmod-build.js";
import type { ScenarioContext } from "../run/context.js";
import { kexecWithAgent } from "../run/kexec.js";
import type { Scenario } from "./types.js";

interface KmodEntry {
  readonly kind: string;
  readonly order: number;
  readonly phys?: string | readonly string[];
  readonly error?: string;
  readonly step?: string;
  readonly pattern_ok?: boolean;
  readonly head_ref?: number;
  readonly tail_ref_histogram?: Record<string, number>;
  readonly compound?: boolean;
  readonly folio_order?: number;
  readonly expected?: { head_ref: number; tail_ref: number; compound: boolean };
  readonly as_expected?: boolean;
  readonly freed?: boolean;
}

interface KmodState {
  readonly committed?: boolean;
  readonly restored?: number;
  readonly failed?: number;
  readonly entries: readonly KmodEntry[];
}

const REMOTE = "/root/kho_harness.ko";
const DEBUGFS = "/sys/kernel/debug/kho_harness";

async function loadModule(ctx: ScenarioContext, args = ""): Promise<void> {
  const kernel = ctx.kernel.built;
  if (!kernel)
    ctx.skip("the test module is built against the kernel's own build: boot a kernel the harness built");
  const ko = await ctx.phase("build", () => buildKmod(kernel));
  await ctx.guest.upload(ko, REMOTE, 0o644);
  await ctx.guest.run(`insmod ${REMOTE} ${args}`.trim());
}

async function readJson(ctx: ScenarioContext, file: string, artifact: string): Promise<KmodState> {
  const text = await ctx.guest.run(`cat ${DEBUGFS}/${file}`);
  await ctx.artifact(artifact, text);
  return JSON.parse(text) as KmodState;
}

function describeEntry(e: KmodEntry): string {
  const tails = JSON.stringify(e.tail_ref_histogram ?? {});
  return `${e.kind} order ${e.order}: head_ref ${e.head_ref}, tails ${tails}, compound ${e.compound}, pattern ${e.pattern_ok ? "ok" : "BAD"}, expected ${JSON.stringify(e.expected)}`;
}

function pagesScenario(
  kind: "folio" | "dma" | "split",
  order: number,
  count: number,
  free: boolean,
  memoryMiB?: number,
): Scenario {
  return {
    id: `pages-${kind}-order${order}`,
    description: `${count} ${kind} block(s) of order ${order} preserved by the test module: pattern, head/tail refcounts and compound state after kexec${free ? ", then freed as their owner would" : ""}`,
    needs: ["kho", "kho-debugfs"],
    boot: { kho: true, ...(memoryMiB ? { memoryMiB } : {}) },
    async run(ctx) {
      await loadModule(ctx);
      await ctx.guest.run(
        `echo "preserve kind=${kind} order=${order} count=${count} seed=${Date.now() % 1e9}${free ? " free=1" : ""}" > ${DEBUGFS}/ctl`,
      );
      await ctx.guest.run(`echo commit > ${DEBUGFS}/ctl`);
      const before = await readJson(ctx, "status", "kmod-status.json");
      const failedAlloc = before.entries.find((e) => e.error);
      if (failedAlloc?.step === "alloc")
        ctx.skip(`the guest could not allocate ${kind} order ${order}: ${failedAlloc.error ?? ""}`);
      ctx.check(before.committed === true, "the module did not commit its KHO subtree", [
        JSON.stringify(before),
      ]);
      await kexecWithAgent(ctx);
      await loadModule(ctx);
      const after = await ctx.phase("checks", () => readJson(ctx, "report", "kmod-report.json"));
      // Freeing happened at load, after the report: a wrong refcount shows there, as DEBUG_VM's
      // "Bad page state". dmesg is the record (the serial console may lag behind SSH).
      const badPages = (await ctx.guest.run("dmesg | grep -A4 'Bad page state' || true")).trim();
      ctx.check(
        after.restored === count && after.failed === 0,
        `restored ${after.restored ?? 0} of ${count} blocks (${after.failed ?? 0} failed)`,
        [JSON.stringify(after.entries.find((e) => e.error) ?? {})],
      );
      for (const e of after.entries) {
        ctx.check(e.pattern_ok === true, `a restored ${kind} block lost its contents`, [describeEntry(e)]);
        ctx.check(e.as_expected === true, `restored ${kind} pages have the wrong refcounts or shape`, [
          describeEntry(e),
          ...badPages.split("\n").slice(0, 8),
        ]);
      }
      ctx.check(
        badPages === "",
        `freeing the restored ${kind} blocks printed Bad page state`,
        badPages.split("\n").slice(0, 12),
      );
      ctx.note(after.entries[0] ? describeEntry(after.entries[0]) : "no entries");
    },
  };
}

export const PAGE_SCENARIOS: readonly Scenario[] = [
  pagesScenario("folio", 0, 8, true),
  pagesScenario("folio", 9, 2, true),
  // A gigantic (1 GiB) folio needs a contiguous 1 GiB range: 6 GiB leaves one free of KHO scratch and early allocations on both machines (q35 maps RAM above 2 GiB from 4 GiB up).
  pagesScenario("folio", 18, 1, true, 6144),
  pagesScenario("split", 9, 2, true),
  pagesScenario("dma", 9, 2, true),
];
