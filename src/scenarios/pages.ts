// Kernel allocations preserved through the test module (guest/kmod): compound folios, DMA-style
// non-compound high-order blocks, and split pages. The module measures, in the next kernel,
// the pattern, the head's and every tail page's refcount and the compound state.
import { randomInt } from "node:crypto";
import { buildKmod } from "../image/kmod-build.js";
import type { z } from "zod";
import { KmodReportSchema, KmodStatusSchema, type KmodEntry } from "../agent/kmod-protocol.js";
import type { ScenarioContext } from "../api/context.js";
import type { Expectation, Scenario } from "../api/scenario.js";
import { parseWith } from "../util/zod-issue.js";
import { CheckFailed } from "../api/outcome.js";
import { HarnessError } from "../errors.js";
import { kexecWithAgent } from "./kexec-step.js";

const REMOTE = "/root/kho_harness.ko";
export const DEBUGFS = "/sys/kernel/debug/kho_harness";
const PAGE_SHIFT = 12n;

/** Loads the module unless another scenario sharing the guest already did (its state is common). */
export async function loadModule(ctx: ScenarioContext): Promise<void> {
  const kernel = ctx.kernel.built;
  if (!kernel)
    ctx.skip("the test module is built against the kernel's own build: boot a kernel the harness built");
  const ko = await ctx.phase("build", () => buildKmod(kernel));
  await ctx.guest.upload(ko, REMOTE, 0o644);
  await ctx.guest.run(`test -d /sys/module/kho_harness || insmod ${REMOTE}`);
}

/** A debugfs file of the module, checked against its schema (a mismatch fails the scenario). */
export async function readJson<S extends z.ZodType>(
  ctx: ScenarioContext,
  file: string,
  schema: S,
  artifact: string,
): Promise<z.output<S>> {
  const text = await ctx.guest.run(`cat ${DEBUGFS}/${file}`);
  await ctx.artifact(artifact, text);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // cut short or garbled by the guest: the kernel side's doing
    throw new CheckFailed(`the test module's ${file} is not JSON`, text.split("\n").slice(0, 5));
  }
  const r = parseWith(schema, json);
  // the module and the host disagree on the protocol: the harness's own fault
  if (!r.ok)
    throw new HarnessError(`the test module's ${file} is not what the host expects: ${r.problem}`, [
      text.slice(0, 600),
    ]);
  return r.value;
}

export function describeEntry(e: KmodEntry): string {
  const tails = JSON.stringify(e.tail_ref_histogram ?? {});
  return `${e.kind} order ${e.order}: head_ref ${e.head_ref}, tails ${tails}, compound ${e.compound}, pattern ${e.pattern_ok ? "ok" : "BAD"}, expected ${JSON.stringify(e.expected)}`;
}

/** The page frame ranges [first, end) an entry covers. */
function frameRange(e: KmodEntry): [bigint, bigint] | undefined {
  if (!e.phys) return undefined;
  const first = BigInt(e.phys) >> PAGE_SHIFT;
  return [first, first + (1n << BigInt(e.order))];
}

/**
 * DEBUG_VM's "Bad page state" reports (each with the lines after it) that concern `mine`: a
 * pfn inside one of its blocks, or inside no block of the report at all (then nobody else
 * can own it). Another scenario's bad pages on a shared guest are that scenario's.
 */
export function badPagesOf(dmesg: string, mine: readonly KmodEntry[], all: readonly KmodEntry[]): string[] {
  const inside = (pfn: bigint, entries: readonly KmodEntry[]) =>
    entries.some((e) => {
      const r = frameRange(e);
      return r !== undefined && pfn >= r[0] && pfn < r[1];
    });
  const blocks = dmesg.split(/\n(?=.*Bad page state)/).filter((b) => /Bad page state/.test(b));
  return blocks
    .filter((b) => {
      const pfn = /pfn:(0x)?([0-9a-f]+)/i.exec(b);
      if (!pfn?.[2]) return true;
      const n = BigInt(`0x${pfn[2]}`);
      return inside(n, mine) || !inside(n, all);
    })
    .flatMap((b) => b.split("\n").slice(0, 5));
}

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
      await loadModule(ctx);
      const seed = randomInt(1, 2 ** 47);
      await ctx.guest.run(
        `echo "preserve kind=${kind} order=${order} count=${count} seed=${seed}${free ? " free=1" : ""}" > ${DEBUGFS}/ctl`,
      );
      await ctx.guest.run(`echo commit > ${DEBUGFS}/ctl`);
      const before = await readJson(ctx, "status", KmodStatusSchema, "kmod-status.json");
      const group = before.entries.find((g) => g.seed === seed);
      ctx.check(group !== undefined, `the module's status has no group with seed ${seed}`, [
        JSON.stringify(before),
      ]);
      if (group?.step === "alloc")
        ctx.skip(`the guest could not allocate ${kind} order ${order}: ${group.error ?? ""}`);
      ctx.check(before.committed === true, "the module did not commit its KHO subtree", [
        JSON.stringify(before),
      ]);
      await kexecWithAgent(ctx);
      await loadModule(ctx);
      const after = await ctx.phase("checks", () =>
        readJson(ctx, "report", KmodReportSchema, "kmod-report.json"),
      );
      const mine = after.entries.filter((e) => e.seed === seed);
      // Freeing happened at load, after the report: a wrong refcount shows there, as DEBUG_VM's
      // "Bad page state". dmesg is the record (the serial console may lag behind SSH).
      const dmesg = await ctx.guest.run("dmesg | grep -A4 'Bad page state' || true");
      const badPages = badPagesOf(dmesg, mine, after.entries);
      const restored = mine.filter((e) => e.restored).length;
      const failed = mine.filter((e) => e.error).length;
      ctx.check(
        restored === count && failed === 0,
        `restored ${restored} of ${count} blocks (${failed} failed)`,
        [JSON.stringify(mine.find((e) => e.error) ?? after.entries.find((e) => e.error) ?? {})],
      );
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
      const first = mine[0];
      ctx.check(first !== undefined, `the next kernel's report has no entry with seed ${seed}`);
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
