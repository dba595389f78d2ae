// Orders the next kernel lacks (seed 002: "The next kernel might not support all the orders the
// current one supports"): blocks of the booted kernel's MAX_PAGE_ORDER are preserved, and the
// guest kexecs into the max-order-9 variant, whose buddy allocator stops one order lower. 7.2's
// kho_restore_page() checks the KHO magic and nothing of the order. The next kernel must restore
// the blocks whole or refuse them with a message of its own; it must not crash, corrupt its free
// lists or hang, and its allocator must stay usable when they are freed.
import type { Scenario } from "../api/scenario.js";
import { HarnessError } from "../errors.js";
import { readMemoryBeforeKexec } from "../memory/handover.js";
import { checkDecodedHandover } from "./handover-step.js";
import { kexecWithAgent } from "./kexec-step.js";
import {
  blockClaims,
  describeEntry,
  maxOrderOf,
  planGroup,
  preserveGroups,
  restoredEntries,
} from "./kmod-blocks.js";

/**
 * Churns the buddy allocator at and around the freed blocks' orders: 2 MiB huge pages taken and
 * given back (order 9, the next kernel's largest), then compaction. A free list the order-10
 * free corrupted trips DEBUG_VM (list and page checks) here, which the console watchdog fails.
 */
const CHURN = [
  "echo 128 > /proc/sys/vm/nr_hugepages",
  "got=$(cat /proc/sys/vm/nr_hugepages)",
  "echo 0 > /proc/sys/vm/nr_hugepages",
  "echo 1 > /proc/sys/vm/compact_memory",
  'echo "$got"',
].join(" && ");

/** The kernel's lines from the test module's first one on (its load restores the blocks). */
export function kernelLinesSinceModule(dmesg: string): string[] {
  const lines = dmesg.split("\n");
  const first = lines.findIndex((l) => l.includes("kho_harness"));
  return first < 0 ? [] : lines.slice(first).filter((l) => !l.includes("kho_harness"));
}

export const pagesNextMaxOrder: Scenario = {
  id: "pages-next-max-order",
  description:
    "folios, split and DMA-style blocks of the booted kernel's MAX_PAGE_ORDER (10) preserved, then kexec into the max-order-9 variant: the next kernel restores them whole (or refuses them with its own message), frees them without Bad page state, and its allocator stays sound",
  needs: ["kho", "kho-debugfs"],
  boot: { kho: true },
  nextKernel: "max-order-9",
  async run(ctx) {
    const before = maxOrderOf(await ctx.guest.run("cat /proc/buddyinfo"));
    const nextMax = Number(ctx.kernel.nextConfig?.get("ARCH_FORCE_MAX_ORDER") ?? NaN);
    if (before === undefined || !(nextMax < before))
      throw new HarnessError(
        `the next kernel was to lack order ${before ?? "?"}, but its CONFIG_ARCH_FORCE_MAX_ORDER is ${Number.isNaN(nextMax) ? "unset" : nextMax}`,
      );
    const groups = [
      planGroup({ kind: "folio", order: before, count: 1, free: true }),
      planGroup({ kind: "split", order: before, count: 1, free: true }),
      planGroup({ kind: "dma", order: before, count: 1, free: false }),
      // the control: an order both kernels have
      planGroup({ kind: "folio", order: nextMax, count: 1, free: true }),
    ];
    await preserveGroups(ctx, groups);
    const { memory, note } = await ctx.phase("dump", () => readMemoryBeforeKexec(ctx));
    ctx.note(note);
    await kexecWithAgent(ctx);
    const after = maxOrderOf(await ctx.guest.run("cat /proc/buddyinfo"));
    ctx.check(
      after === nextMax,
      `the kexec did not land in the max-order-9 kernel: its /proc/buddyinfo gives MAX_PAGE_ORDER ${after ?? "?"}`,
    );
    ctx.fact({ kind: "max-order", before, after: after ?? -1 });

    const { entries, badPages } = await restoredEntries(ctx, groups);
    const dmesg = await ctx.guest.run("dmesg");
    await ctx.artifact("dmesg-after-restore.txt", dmesg);
    for (const e of entries) {
      if (!e.restored) {
        // A refusal is allowed if the kernel said why, in its own words: a KHO line about the
        // order (or refusing) printed once the module began restoring.
        const said = kernelLinesSinceModule(dmesg).filter(
          (l) =>
            /kexec_handover|\bKHO\b/.test(l) && /order|refus|invalid|unsupported|too (large|big)/i.test(l),
        );
        ctx.check(
          said.length > 0,
          `the next kernel did not restore a ${e.kind} block of order ${e.order} and said nothing about it: ${e.error ?? ""}`,
          [describeEntry(e)],
        );
        continue;
      }
      ctx.check(e.pattern_ok === true, `a restored ${e.kind} block of order ${e.order} lost its contents`, [
        describeEntry(e),
      ]);
      const freed = groups.find((g) => g.seed === e.seed)?.free ?? false;
      if (freed)
        ctx.check(
          e.as_expected === true,
          `restored ${e.kind} pages of order ${e.order} have the wrong refcounts or shape`,
          [describeEntry(e), ...badPages.slice(0, 8)],
        );
    }
    ctx.check(
      badPages.length === 0,
      "freeing the restored blocks printed Bad page state",
      badPages.slice(0, 12),
    );
    const hugepages = Number((await ctx.phase("churn", () => ctx.guest.run(CHURN))).trim());
    ctx.check(
      hugepages > 0,
      `the next kernel could not allocate one 2 MiB huge page after the free (${hugepages})`,
    );
    await checkDecodedHandover(ctx, memory, blockClaims(entries));
    ctx.note(
      `MAX_PAGE_ORDER ${before} -> ${nextMax}: ${entries.filter((e) => e.restored).length} of ${entries.length} blocks restored (${entries.map((e) => `${e.kind} ${e.order}: ${e.restored ? (e.freed ? "freed" : "kept") : "refused"}`).join(", ")}); ${hugepages} huge pages allocated after`,
    );
  },
};
