// The test module's blocks as scenarios plan them: preserve groups (kind, order, count, node,
// min_phys) through debugfs and check the module did, then after the kexec read back what the
// next kernel restored of them. The per-block verdicts are each scenario's own.
import { randomInt } from "node:crypto";
import type { z } from "zod";
import { KmodReportSchema, KmodStatusSchema, type KmodEntry } from "../agent/kmod-protocol.js";
import type { ScenarioContext } from "../api/context.js";
import { CheckFailed } from "../api/outcome.js";
import { HarnessError } from "../errors.js";
import { buildKmod } from "../image/kmod-build.js";
import type { ClaimedRange } from "../memory/handover.js";
import { parseWith } from "../util/zod-issue.js";

const PAGE_SHIFT = 12n;

export const DEBUGFS = "/sys/kernel/debug/kho_harness";

/**
 * Loads the module unless another scenario sharing the guest already did (its state is common).
 * It is built against the running kernel: the booted one, or after a kexec a variant's build.
 */
export async function loadModule(ctx: ScenarioContext): Promise<void> {
  const kernel = ctx.guest.boot > 1 && ctx.kernel.nextBuilt ? ctx.kernel.nextBuilt : ctx.kernel.built;
  if (!kernel)
    ctx.skip("the test module is built against the kernel's own build: boot a kernel the harness built");
  const ko = await ctx.phase("build", () => buildKmod(kernel));
  const remote = `${ctx.guest.workDir}/kho_harness.ko`;
  await ctx.guest.upload(ko, remote, 0o644);
  await ctx.guest.run(`test -d /sys/module/kho_harness || insmod ${remote}`);
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

/** One preserve command of the module. */
export interface BlockSpec {
  readonly kind: "folio" | "dma" | "split";
  readonly order: number;
  readonly count: number;
  /**
   * false keeps the block after the check (dma: how a DMA buffer's owner keeps it; their
   * refcount shape is pages-dma-order9's to check, an expected failure on 7.2).
   */
  readonly free: boolean;
}

export interface PlannedGroup extends BlockSpec {
  readonly seed: number;
  /** node=: allocate on this node only. */
  readonly node?: number;
  /** min_phys=: every block at or above this address. */
  readonly minPhys?: bigint;
}

/** `spec` with a seed of its own (and where to allocate it). */
export function planGroup(spec: BlockSpec, where: { node?: number; minPhys?: bigint } = {}): PlannedGroup {
  return { ...spec, ...where, seed: randomInt(1, 2 ** 47) };
}

/** A block the module allocated and preserved, with the node it was allocated on. */
export interface PreservedBlock {
  readonly phys: string;
  readonly nid: number | undefined;
  readonly group: PlannedGroup;
}

/** The module's ctl line for a group. */
export function preserveCommand(g: PlannedGroup): string {
  const where = [
    ...(g.node !== undefined ? [`node=${g.node}`] : []),
    ...(g.minPhys !== undefined ? [`min_phys=0x${g.minPhys.toString(16)}`] : []),
  ];
  return [
    "preserve",
    `kind=${g.kind}`,
    `order=${g.order}`,
    `count=${g.count}`,
    `seed=${g.seed}`,
    `free=${g.free ? 1 : 0}`,
    ...where,
  ].join(" ");
}

/**
 * Loads the module, preserves every group and commits; a group the guest could not allocate
 * skips the scenario, any other error fails it, and so does a block below its min_phys.
 */
export async function preserveGroups(
  ctx: ScenarioContext,
  groups: readonly PlannedGroup[],
): Promise<PreservedBlock[]> {
  await loadModule(ctx);
  const lines = groups.map((g) => `echo "${preserveCommand(g)}" > ${DEBUGFS}/ctl`);
  await ctx.phase("preserve", () => ctx.guest.run([...lines, `echo commit > ${DEBUGFS}/ctl`].join(" && ")));
  const status = await readJson(ctx, "status", KmodStatusSchema, "kmod-status.json");
  const blocks: PreservedBlock[] = [];
  for (const g of groups) {
    const where = g.node !== undefined ? ` on node ${g.node}` : "";
    const s = status.entries.find((e) => e.seed === g.seed);
    ctx.check(s !== undefined, `the module's status has no group with seed ${g.seed}`, [
      JSON.stringify(status),
    ]);
    if (s?.step === "alloc")
      ctx.skip(`the guest could not allocate ${g.kind} order ${g.order}${where}: ${s.error ?? ""}`);
    ctx.check(!s?.error, `preserving ${g.kind} order ${g.order}${where} failed: ${s?.error ?? ""}`, [
      JSON.stringify(s),
    ]);
    (s?.phys ?? []).forEach((phys, i) => {
      if (g.minPhys !== undefined)
        ctx.check(
          BigInt(phys) >= g.minPhys,
          `${g.kind} order ${g.order} at ${phys} is below min_phys 0x${g.minPhys.toString(16)}`,
        );
      blocks.push({ phys, nid: s?.nids?.[i], group: g });
    });
  }
  ctx.check(status.committed === true, "the module did not commit its KHO subtree", [JSON.stringify(status)]);
  return blocks;
}

/**
 * After the kexec: loads the module (its load restores, checks and frees every entry) and returns
 * this scenario's entries, every planned block among them, and the Bad page state reports that
 * concern them.
 */
export async function restoredEntries(
  ctx: ScenarioContext,
  groups: readonly PlannedGroup[],
): Promise<{ entries: KmodEntry[]; badPages: string[] }> {
  await loadModule(ctx);
  const report = await ctx.phase("checks", () =>
    readJson(ctx, "report", KmodReportSchema, "kmod-report.json"),
  );
  const seeds = new Set(groups.map((g) => g.seed));
  const entries = report.entries.filter((e) => e.seed !== undefined && seeds.has(e.seed));
  const planned = groups.reduce((n, g) => n + g.count, 0);
  ctx.check(
    entries.length === planned,
    `the next kernel handed back ${entries.length} of ${planned} blocks`,
    [JSON.stringify(report.entries.find((e) => e.error) ?? {})],
  );
  // dmesg is the record (the serial console may lag behind SSH)
  const dmesg = await ctx.guest.run("dmesg | grep -A4 'Bad page state' || true");
  return { entries, badPages: badPagesOf(dmesg, entries, report.entries) };
}

/** The frames of `entries` as claims on the decoded preserved-memory map. */
export function blockClaims(entries: readonly KmodEntry[]): ClaimedRange[] {
  return entries.flatMap((e) => {
    if (!e.phys) return [];
    const start = BigInt(e.phys);
    return [
      {
        owner: `kho_harness ${e.kind} order ${e.order}`,
        start,
        end: start + (1n << (BigInt(e.order) + PAGE_SHIFT)),
      },
    ];
  });
}

/** MAX_PAGE_ORDER of the running kernel: /proc/buddyinfo has one column per order. */
export function maxOrderOf(buddyinfo: string): number | undefined {
  const first = buddyinfo.split("\n").find((l) => /zone/.test(l));
  const counts = first
    ?.replace(/^.*zone\s+\S+/, "")
    .trim()
    .split(/\s+/)
    .filter(Boolean);
  return counts?.length ? counts.length - 1 : undefined;
}
