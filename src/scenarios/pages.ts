// Kernel allocations preserved through the test module (guest/kmod): compound folios, DMA-style
// non-compound high-order blocks, and split pages. The module measures, in the next kernel,
// the pattern, the head's and every tail page's refcount and the compound state.
import type { Expectation, Scenario } from "../api/scenario.js";
import { kexecWithAgent } from "./kexec-step.js";
import { describeEntry, planGroup, preserveGroups, restoredEntries } from "./kmod-blocks.js";

/**
 * Without the "preserve unsplit high-order pages" series (seed 000), kho_restore_pages gives
 * every tail page of a non-compound block refcount 1, so freeing it trips Bad page state.
 */
const UNSPLIT_PAGES_MISSING: Expectation = {
  unless: "kho-unsplit-pages",
  reason:
    "without the 'preserve unsplit high-order pages' series (seed 000), kho_restore_pages gives every tail page of a non-compound block refcount 1, so freeing it trips Bad page state",
  consoleLines: [
    /Bad page state/,
    /nonzero _refcount/,
    /page dumped because/,
    /Call trace|Hardware name|Tainted/i,
  ],
};

function pagesScenario(
  kind: "folio" | "dma" | "split",
  order: number,
  count: number,
  free: boolean,
  memoryMiB?: number,
): Scenario {
  return {
    id: `pages-${kind}-order${order}`,
    ...(kind === "dma" ? { expectation: UNSPLIT_PAGES_MISSING } : {}),
    description: `${count} ${kind} block(s) of order ${order} preserved by the test module: pattern, head/tail refcounts and compound state after kexec${free ? ", then freed as their owner would" : ""}`,
    needs: ["kho", "kho-debugfs"],
    boot: { kho: true, ...(memoryMiB ? { memoryMiB } : {}) },
    // The module keeps one list of groups: each scenario preserves its own (its seed tells
    // them apart), commits all of them again, and reads its own entries after the kexec.
    shareable: true,
    async run(ctx) {
      const group = planGroup({ kind, order, count, free });
      await preserveGroups(ctx, [group]);
      await kexecWithAgent(ctx);
      const { entries: mine, badPages } = await restoredEntries(ctx, [group]);
      const failed = mine.filter((e) => e.error);
      ctx.check(failed.length === 0, `restored ${mine.length - failed.length} of ${count} blocks`, [
        JSON.stringify(failed[0] ?? {}),
      ]);
      for (const e of mine) {
        ctx.check(e.pattern_ok === true, `a restored ${kind} block lost its contents`, [describeEntry(e)]);
        ctx.check(e.as_expected === true, `restored ${kind} pages have the wrong refcounts or shape`, [
          describeEntry(e),
          ...badPages.slice(0, 8),
        ]);
      }
      ctx.check(
        badPages.length === 0,
        `freeing the restored ${kind} blocks printed Bad page state`,
        badPages.slice(0, 12),
      );
      const [first] = mine;
      if (first) {
        ctx.note(describeEntry(first), {
          kind: "page-block",
          order: first.order,
          tails: first.tail_ref_histogram ?? {},
          compound: first.compound === true,
          pattern: first.pattern_ok === true,
        });
      }
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
