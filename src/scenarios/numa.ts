// Preserved memory on a two-node guest (seed 003: deferred struct page init and NUMA). The test
// module allocates on a chosen node (node=), optionally high in it (min_phys=); after the kexec
// every block must come back whole, shaped as before, on the node it was allocated on, and the
// host's decoding of the handover must find every frame, on the node whose QEMU memory backend
// holds it.
import { requireHostMemory } from "../memory/access.js";
import type { ScenarioContext } from "../api/context.js";
import type { NumaBlock } from "../api/facts.js";
import type { Scenario } from "../api/scenario.js";
import { readMemoryBeforeKexec } from "../memory/handover.js";
import { chunkAt, chunkNodes, chunksAcrossNodes } from "../memory/numa-map.js";
import type { PreservedChunk } from "../kho/radix.js";
import {
  nodeOfAddress,
  qemuRamWindows,
  ramWindowsJson,
  windowNode,
  type RamWindow,
} from "../vm/guest-ram.js";
import { MiB } from "../agent/memfd-args.js";
import { pfnAddresses } from "../agent/protocol.js";
import { findMemfd } from "../checks/memfd.js";
import { checkDecodedHandover } from "./handover-step.js";
import { memfdScenario } from "./memfd-common.js";
import { kexecWithAgent } from "./kexec-step.js";
import {
  blockClaims,
  describeEntry,
  maxOrderOf,
  planGroup,
  preserveGroups,
  restoredEntries,
  type BlockSpec,
  type PlannedGroup,
} from "./kmod-blocks.js";

const NODES = 2;
const MEMORY_MIB = 2048;
const NUMA_BOOT = { kho: true, memoryMiB: MEMORY_MIB, numaNodes: NODES } as const;
const MIB = 1n << 20n;

interface Topology {
  readonly node: number;
  readonly cpus: string;
  readonly memKiB: number;
}

/** `N CPULIST MEMKIB` lines of the script below. */
export function parseTopology(text: string): Topology[] {
  return text
    .split("\n")
    .map((l) => /^(\d+) (\S*) (\d+)$/.exec(l.trim()))
    .flatMap((m) => (m ? [{ node: Number(m[1]), cpus: m[2] ?? "", memKiB: Number(m[3]) }] : []));
}

const TOPOLOGY = `for d in /sys/devices/system/node/node[0-9]*; do echo "\${d##*node} $(cat $d/cpulist) $(awk '/MemTotal/ {print $4}' $d/meminfo)"; done`;

/** The guest's nodes as its kernel sees them, recorded; fails unless there are `NODES`. */
export async function recordTopology(ctx: ScenarioContext): Promise<Topology[]> {
  const nodes = parseTopology(await ctx.guest.run(TOPOLOGY));
  ctx.fact({ kind: "numa-topology", boot: ctx.guest.boot, nodes });
  ctx.check(
    nodes.length === NODES && nodes.every((n) => n.memKiB > 0),
    `boot ${ctx.guest.boot} sees ${nodes.length} NUMA node(s) with memory, the guest has ${NODES}`,
    nodes.map((n) => `node ${n.node}: cpus ${n.cpus || "none"}, ${n.memKiB} KiB`),
  );
  return nodes;
}

/** Each node's guest-physical span, from QEMU's RAM windows. */
export function nodeSpans(windows: readonly RamWindow[]): Map<number, { start: bigint; end: bigint }> {
  const spans = new Map<number, { start: bigint; end: bigint }>();
  for (const w of windows) {
    const n = windowNode(w);
    const s = spans.get(n);
    spans.set(
      n,
      s ? { start: s.start < w.start ? s.start : w.start, end: s.end > w.end ? s.end : w.end } : w,
    );
  }
  return spans;
}

interface NumaGroup extends PlannedGroup {
  readonly node: number;
}

/**
 * Preserves every group, kexecs, and checks each block after the restore: pattern, shape (for
 * the kinds freed here), node asked = node before = node after = QEMU's node, no Bad page state,
 * and every frame in the host's decoding of the handover.
 */
async function preserveKexecCheck(
  ctx: ScenarioContext,
  groups: readonly NumaGroup[],
  afterKexec?: () => Promise<void>,
): Promise<NumaBlock[]> {
  const preserved = await preserveGroups(ctx, groups);
  const windows = await qemuRamWindows(requireHostMemory(ctx.guest).qmp);
  await ctx.artifact("qemu-ram-windows.json", ramWindowsJson(windows));
  const asked = new Map<string, NumaGroup>();
  for (const b of preserved) {
    const node = b.group.node ?? -1;
    const host = nodeOfAddress(windows, BigInt(b.phys));
    ctx.check(
      b.nid === node && host === node,
      `${b.group.kind} order ${b.group.order} asked on node ${node} was allocated at ${b.phys}: node ${b.nid ?? "?"} for the guest, node ${host ?? "none"} for QEMU`,
    );
    asked.set(b.phys, { ...b.group, node });
  }

  const { memory, note } = await ctx.phase("dump", () => readMemoryBeforeKexec(ctx));
  ctx.note(note);
  await kexecWithAgent(ctx);
  await recordTopology(ctx);
  await afterKexec?.();
  const { entries, badPages } = await restoredEntries(ctx, groups);
  const blocks: NumaBlock[] = [];
  for (const e of entries) {
    const g = asked.get(e.phys ?? "");
    const host = e.phys ? (nodeOfAddress(windows, BigInt(e.phys)) ?? null) : null;
    blocks.push({
      kind: e.kind,
      order: e.order,
      phys: e.phys ?? "?",
      asked: g?.node ?? -1,
      before: e.nid_before ?? -1,
      after: e.restored ? (e.nid ?? null) : null,
      host,
      zone: e.zone ?? null,
    });
    ctx.check(
      e.restored === true,
      `a ${e.kind} block of order ${e.order} was not restored: ${e.error ?? ""}`,
      [describeEntry(e)],
    );
    ctx.check(e.pattern_ok === true, `a restored ${e.kind} block lost its contents`, [describeEntry(e)]);
    ctx.check(
      g !== undefined && e.nid_before === g.node && e.nid === g.node && host === g.node,
      `${e.kind} order ${e.order} at ${e.phys ?? "?"} was allocated on node ${g?.node ?? "?"}: node ${e.nid_before ?? "?"} before the kexec, ${e.nid ?? "?"} after it (${e.zone ?? "?"}), QEMU's node ${host ?? "none"}`,
    );
    if (g?.free)
      ctx.check(e.as_expected === true, `restored ${e.kind} pages have the wrong refcounts or shape`, [
        describeEntry(e),
        ...badPages.slice(0, 8),
      ]);
  }
  ctx.fact({ kind: "numa-blocks", blocks });
  ctx.check(
    badPages.length === 0,
    "freeing the restored blocks printed Bad page state",
    badPages.slice(0, 12),
  );
  const report = await checkDecodedHandover(ctx, memory, blockClaims(entries));
  checkMapNodes(
    ctx,
    report.chunks,
    windows,
    [...asked].map(([phys, g]) => [BigInt(phys), g.node] as const),
  );
  return blocks;
}

/**
 * The decoded map on the machine's nodes: no chunk lies on two nodes (KHO's own rule), and the
 * chunk holding each block is on the node it was allocated on.
 */
function checkMapNodes(
  ctx: ScenarioContext,
  chunks: readonly PreservedChunk[],
  windows: readonly RamWindow[],
  blocks: readonly (readonly [bigint, number])[],
): void {
  const nodes = chunkNodes(chunks, windows);
  const across = chunksAcrossNodes(nodes);
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  ctx.check(
    across.length === 0,
    `${across.length} preserved chunk(s) of the decoded map lie on two nodes or outside RAM`,
    across
      .slice(0, 6)
      .map(
        (n) =>
          `${hex(n.chunk.phys)} order ${n.chunk.order}: node ${n.first ?? "none"} to ${n.last ?? "none"}`,
      ),
  );
  for (const [phys, node] of blocks) {
    const c = chunkAt(nodes, phys);
    ctx.check(
      c?.first === node,
      `the decoded map holds the block at ${hex(phys)} (node ${node}) ${c ? `in a chunk on node ${c.first ?? "none"}` : "in no chunk"}`,
    );
  }
}

function describeBlocks(blocks: readonly NumaBlock[]): string {
  const byNode = new Map<number, number>();
  for (const b of blocks) byNode.set(b.asked, (byNode.get(b.asked) ?? 0) + 1);
  return `${blocks.length} blocks restored on the node they were allocated on (${[...byNode].map(([n, k]) => `node ${n}: ${k}`).join(", ")}; zones ${[...new Set(blocks.map((b) => b.zone))].join(", ")})`;
}

/** Folios of order 0, 9 and the kernel's largest, split and DMA-style blocks, on every node. */
export const numaPages: Scenario = {
  id: "numa-pages",
  description: `on a ${NODES}-node guest, folios of order 0, 9 and MAX_PAGE_ORDER, split and DMA-style blocks allocated on each node: after kexec each is restored whole, shaped as before, on its node (page_to_nid before and after, QEMU's backend), and in the decoded map`,
  needs: ["kho", "kho-debugfs"],
  boot: NUMA_BOOT,
  shareable: true,
  async run(ctx) {
    await recordTopology(ctx);
    const max = maxOrderOf(await ctx.guest.run("cat /proc/buddyinfo"));
    ctx.check(
      max !== undefined && max >= 9,
      `/proc/buddyinfo gives no usable MAX_PAGE_ORDER (${max ?? "none"})`,
    );
    const orders = [...new Set([9, max ?? 9])];
    const plan: NumaGroup[] = [];
    for (let node = 0; node < NODES; node++) {
      const specs: BlockSpec[] = [
        { kind: "folio", order: 0, count: 4, free: true },
        ...orders.map((order): BlockSpec => ({ kind: "folio", order, count: 1, free: true })),
        { kind: "split", order: 9, count: 1, free: true },
        ...orders.map((order): BlockSpec => ({ kind: "dma", order, count: 1, free: false })),
      ];
      for (const s of specs) plan.push({ ...planGroup(s), node });
    }
    const blocks = await preserveKexecCheck(ctx, plan);
    ctx.note(describeBlocks(blocks));
  },
};

/**
 * mm_init.c's defer_init() (7.2) initialises one section (128 MiB with 4 KiB pages) of the
 * highest zone of each node at boot and defers the rest from the next section boundary on, so
 * with its zone starting at most 16 MiB into the node (x86's DMA zone), everything from 16 MiB +
 * 2 sections into a node is deferred. The blocks go into the upper half of each 1 GiB node.
 */
const DEFERRED_FROM = 16n * MIB + 256n * MIB;
const DEFERRED_LINE = (node: number) => new RegExp(`node ${node} deferred pages initialised in \\d+ms`);

/** Blocks high in each node, where both kernels initialise the struct pages late. */
export const numaDeferred: Scenario = {
  id: "numa-deferred",
  description: `on a ${NODES}-node guest with DEFERRED_STRUCT_PAGE_INIT, folios and split blocks of order 9 allocated in the upper half of each node (struct pages initialised late, in both kernels): KHO's early marking must survive the next kernel's deferred init, and every block comes back whole on its node`,
  needs: ["kho", "kho-debugfs"],
  boot: NUMA_BOOT,
  shareable: true,
  async run(ctx) {
    if ((ctx.kernel.config.get("DEFERRED_STRUCT_PAGE_INIT") ?? "n") === "n")
      ctx.skip("the kernel has no CONFIG_DEFERRED_STRUCT_PAGE_INIT: nothing is deferred");
    await recordTopology(ctx);
    const deferredIn = async (boot: number) => {
      const dmesg = await ctx.guest.run("dmesg");
      for (let node = 0; node < NODES; node++)
        ctx.check(
          DEFERRED_LINE(node).test(dmesg),
          `boot ${boot} deferred no struct page initialisation on node ${node} (no "node ${node} deferred pages initialised" line): the blocks would not be in a deferred range`,
          dmesg
            .split("\n")
            .filter((l) => /deferred|Initmem setup/.test(l))
            .slice(0, 8),
        );
    };
    await deferredIn(1);
    const spans = nodeSpans(await qemuRamWindows(requireHostMemory(ctx.guest).qmp));
    const plan: NumaGroup[] = [];
    for (let node = 0; node < NODES; node++) {
      const span = spans.get(node);
      ctx.check(span !== undefined, `QEMU has no RAM for node ${node}`);
      if (!span) continue;
      const half = span.start + (span.end - span.start) / 2n;
      const minPhys = half > span.start + DEFERRED_FROM ? half : span.start + DEFERRED_FROM;
      for (const s of [
        { kind: "folio", order: 9, count: 2, free: true },
        { kind: "split", order: 9, count: 1, free: true },
        { kind: "dma", order: 9, count: 1, free: false },
      ] as const)
        plan.push({ ...planGroup(s, { minPhys }), node });
    }
    const blocks = await preserveKexecCheck(ctx, plan, () => deferredIn(2));
    ctx.note(`${describeBlocks(blocks)}, all in the deferred part of their node`);
  },
};

const MEMFD_NODE = 1;
const MEMFD_SESSION = "kho-numa-memfd";

/** A memfd filled under MPOL_BIND to node 1, preserved through LUO. */
export const numaMemfd: Scenario = memfdScenario({
  id: "numa-memfd",
  description: `on a ${NODES}-node guest, an 8 MiB memfd filled under MPOL_BIND to node ${MEMFD_NODE} and preserved through LUO: the same bytes on the same frames after kexec, every page on node ${MEMFD_NODE} before and after (move_pages in the guest, QEMU's backend of each frame)`,
  sessions: [{ name: MEMFD_SESSION, memfds: [{ token: 1, size: 8 * MiB, node: MEMFD_NODE }] }],
  boot: NUMA_BOOT,
  decodeMap: true,
  async prepare(ctx) {
    await recordTopology(ctx);
  },
  async verify(ctx, before, after) {
    const windows = await qemuRamWindows(requireHostMemory(ctx.guest).qmp);
    for (const [when, result] of [
      ["before the kexec", before],
      ["after it", after],
    ] as const) {
      const m = findMemfd(result, MEMFD_SESSION, 1);
      const pages = m?.pages ?? 0;
      ctx.check(
        pages > 0 && JSON.stringify(m?.nodes) === JSON.stringify({ [MEMFD_NODE]: pages }),
        `${when}, the memfd's ${pages} pages are on nodes ${JSON.stringify(m?.nodes ?? null)} (move_pages), all were to be on node ${MEMFD_NODE}`,
      );
      const frames = m?.pfns ? pfnAddresses(m.pfns, m.page_size) : [];
      const elsewhere = frames.filter((a) => nodeOfAddress(windows, a) !== MEMFD_NODE);
      ctx.check(
        frames.length === pages && elsewhere.length === 0,
        `${when}, ${elsewhere.length} of the memfd's ${frames.length} frames are outside node ${MEMFD_NODE}'s memory (QEMU's backend)`,
        elsewhere
          .slice(0, 4)
          .map((a) => `0x${a.toString(16)} on node ${nodeOfAddress(windows, a) ?? "none"}`),
      );
    }
    ctx.note(`every page of the memfd on node ${MEMFD_NODE}, in both kernels and for QEMU`);
  },
});

export const NUMA_SCENARIOS: readonly Scenario[] = [numaPages, numaDeferred, numaMemfd];
