// The corruption matrix's cases: each a named mutation of one field of a real handover, placed
// by the located map (locate.ts) and, where a choice is to be made, by the case's seed. A case
// returns the writes it makes (checked by guard.ts before any is done) or why this handover has
// nothing for it to corrupt. Pure: the scenario (src/scenarios/corrupt.ts) applies them at the
// kexec pause and judges the next kernel.
import { cells, leU64 } from "../fdt/writer.js";
import { PAGE_SIZE } from "../kho/blob.js";
import type { PlannedWrite } from "./guard.js";
import { radixGeometry } from "../kho/radix.js";
import { radixLayout, type HandoverMap } from "./locate.js";

export { seededRandom } from "../util/seeded-random.js";

const PAGE = BigInt(PAGE_SIZE);
/** MAX_PAGE_ORDER of the harness's kernels (4 KiB pages, both arches): 10. */
export const MAX_PAGE_ORDER = 10;
/** Entries of a KHO block page of 80-byte session entries: (4096 - 16) / 80. */
const SESSIONS_PER_BLOCK = Math.floor((PAGE_SIZE - 16) / 80);

export type CaseGroup = "none" | "root-fdt" | "radix" | "luo" | "memblock";

export interface CorruptCase {
  readonly id: string;
  readonly group: CaseGroup;
  readonly description: string;
  /** The writes, or a sentence saying why this handover has nothing to corrupt. */
  plan(m: HandoverMap, rand: () => number): readonly PlannedWrite[] | string;
}

/** `text` in a fixed-size char field, NUL-padded. */
const chars = (text: string, size: number) => {
  const b = new Uint8Array(size);
  b.set(Buffer.from(text, "latin1").subarray(0, size - 1));
  return b;
};
const ramEnd = (m: HandoverMap) => m.ram.reduce((a, r) => (r.end > a ? r.end : a), 0n);
const pick = <T>(xs: readonly T[], rand: () => number): T | undefined => xs[Math.floor(rand() * xs.length)];

/** The chunks the tree holds after writing `ptr` at `index` of the table at `tablePhys`. */
function chunksWith(
  m: HandoverMap,
  pages: ReadonlyMap<bigint, Uint8Array>,
  tablePhys: bigint,
  index: number,
  ptr: bigint,
) {
  const page = new Uint8Array(pages.get(tablePhys) ?? new Uint8Array(PAGE_SIZE));
  new DataView(page.buffer).setBigUint64(index * 8, ptr, true);
  const changed = new Map(pages);
  changed.set(tablePhys, page);
  const before = new Set(m.chunks.map((c) => `${c.phys}:${c.order}`));
  return radixLayout(m.radixRoot, changed, m.abi).chunks.filter((c) => !before.has(`${c.phys}:${c.order}`));
}

/**
 * A copy of an existing entry of some table into a free slot of the same table (so nothing the
 * kernel preserved goes missing), chosen so that every chunk it adds satisfies `want`.
 */
function radixCopy(
  m: HandoverMap,
  levels: (level: number) => boolean,
  want: (c: { phys: bigint; order: number }) => boolean,
  what: string,
): PlannedWrite[] | string {
  for (const t of m.tables.filter((x) => levels(x.level))) {
    const used = new Set(t.entries.map((e) => e.index));
    for (const e of t.entries)
      for (let j = 0; j < PAGE_SIZE / 8; j++) {
        if (used.has(j)) continue;
        const added = chunksWith(m, m.radixPages, t.phys, j, e.ptr);
        if (added.length > 0 && added.every(want))
          return [
            {
              phys: t.phys + BigInt(j * 8),
              bytes: leU64(e.ptr),
              what: `${what}: level-${t.level} table ${hexOf(t.phys)} entry ${j} = entry ${e.index} (${added.length} chunks added, first order ${added[0]?.order} at ${hexOf(added[0]?.phys ?? 0n)})`,
            },
          ];
      }
  }
  return `no free slot of the tree's tables makes every added chunk ${what}`;
}

const hexOf = (v: bigint) => `0x${v.toString(16)}`;

/** The first address a leaf's bitmap covers: its key prefix with bit 0, decoded. */
function leafBase(m: HandoverMap, prefix: bigint, order: number): bigint {
  const g = radixGeometry(12, m.abi);
  return (prefix << BigInt(g.pageShift + order)) & ((1n << 64n) - 1n);
}

/** Every case, in matrix order. */
export const CORRUPT_CASES: readonly CorruptCase[] = [
  {
    id: "noop",
    group: "none",
    description:
      "the root FDT's compatible and a radix entry written back unchanged: must not change the outcome",
    plan: (m) => {
      const t = m.tables[0];
      const e = t?.entries[0];
      return [
        {
          phys: m.compatibleAt,
          bytes: chars(m.compatible, m.compatible.length + 1),
          what: "root FDT compatible, unchanged",
        },
        ...(t && e
          ? [
              {
                phys: t.phys + BigInt(e.index * 8),
                bytes: leU64(e.ptr),
                what: "radix root entry, unchanged",
              },
            ]
          : []),
      ];
    },
  },
  {
    id: "fdt-compatible-old",
    group: "root-fdt",
    description: "the root FDT's compatible names the previous KHO ABI (kho-vN-1)",
    plan: (m) => {
      const v = /^kho-v(\d+)$/.exec(m.compatible);
      if (!v?.[1]) return `the root compatible "${m.compatible}" is not kho-vN`;
      const old = `kho-v${Number(v[1]) - 1}`;
      if (old.length !== m.compatible.length) return `${old} does not fit in place of ${m.compatible}`;
      return [
        {
          phys: m.compatibleAt,
          bytes: chars(old, old.length + 1),
          what: `root FDT compatible ${m.compatible} -> ${old}`,
        },
      ];
    },
  },
  {
    id: "fdt-compatible-garbage",
    group: "root-fdt",
    description: "the root FDT's compatible is random letters",
    plan: (m, rand) => {
      const junk = Array.from(m.compatible, () => String.fromCharCode(97 + Math.floor(rand() * 26))).join("");
      return [
        {
          phys: m.compatibleAt,
          bytes: chars(junk, junk.length + 1),
          what: `root FDT compatible -> "${junk}"`,
        },
      ];
    },
  },
  {
    id: "fdt-totalsize-truncated",
    group: "root-fdt",
    description: "the root FDT header's totalsize cut to end inside the structure block",
    plan: (m) => {
      const offStruct = new DataView(m.fdt.buffer, m.fdt.byteOffset).getUint32(8, false);
      return [
        {
          phys: m.totalsizeAt,
          bytes: cells(offStruct + 8),
          what: `root FDT totalsize ${m.fdt.length} -> ${offStruct + 8}`,
        },
      ];
    },
  },
  {
    id: "fdt-map-outside-ram",
    group: "root-fdt",
    description: "preserved-memory-map points 1 GiB past the end of RAM",
    plan: (m) => {
      const to = ramEnd(m) + (1n << 30n);
      return [
        {
          phys: m.mapAt,
          bytes: leU64(to),
          what: `preserved-memory-map ${hexOf(m.radixRoot)} -> ${hexOf(to)} (RAM ends at ${hexOf(ramEnd(m))})`,
        },
      ];
    },
  },
  {
    id: "fdt-map-unaligned",
    group: "root-fdt",
    description: "preserved-memory-map points 8 bytes into the root table (not page-aligned)",
    plan: (m) => [
      {
        phys: m.mapAt,
        bytes: leU64(m.radixRoot + 8n),
        what: `preserved-memory-map ${hexOf(m.radixRoot)} -> ${hexOf(m.radixRoot + 8n)}`,
      },
    ],
  },
  {
    id: "fdt-map-not-a-node",
    group: "root-fdt",
    description:
      "preserved-memory-map points at a preserved data page (a memfd folio, or another preserved chunk) instead of a tree table",
    plan: (m, rand) => {
      const treePages = new Set([...m.tables, ...m.leaves].map((t) => t.phys));
      const folio = m.luo?.sessions.flatMap((s) => s.files).find((f) => f.memfd?.firstFolioPfn)
        ?.memfd?.firstFolioPfn;
      const to =
        folio !== undefined
          ? folio * PAGE
          : pick(
              m.chunks.filter((c) => !treePages.has(c.phys)),
              rand,
            )?.phys;
      if (to === undefined) return "the handover preserves no data page";
      return [
        {
          phys: m.mapAt,
          bytes: leU64(to),
          what: `preserved-memory-map ${hexOf(m.radixRoot)} -> ${hexOf(to)} (${folio !== undefined ? "a memfd folio" : "a preserved chunk"})`,
        },
      ];
    },
  },
  {
    id: "radix-order-too-big",
    group: "radix",
    description: `a tree entry copied into a free slot whose keys decode to orders above MAX_PAGE_ORDER (${MAX_PAGE_ORDER}), and so to addresses far past RAM`,
    plan: (m) =>
      radixCopy(
        m,
        () => true,
        (c) => c.order > MAX_PAGE_ORDER,
        `of an order above ${MAX_PAGE_ORDER}`,
      ),
  },
  {
    id: "radix-frame-outside-ram",
    group: "radix",
    description:
      "a bit set in a leaf of the tree for a chunk past the end of RAM (the leaf's own order, a valid one)",
    plan: (m) => {
      // A leaf covers 32768 chunks of its order from a window aligned to that span: the
      // highest-order leaf reaches furthest, past the end of RAM on a small guest.
      const end = ramEnd(m);
      for (const leaf of [...m.leaves].sort((a, b) => (b.order ?? 0) - (a.order ?? 0))) {
        if (leaf.order === undefined || leaf.order > MAX_PAGE_ORDER) continue;
        const size = PAGE << BigInt(leaf.order);
        const base = leafBase(m, leaf.prefix, leaf.order);
        const bit = end > base ? Number((end - base + size - 1n) / size) : 0;
        if (bit >= PAGE_SIZE * 8 || base + BigInt(bit) * size >= 1n << 48n) continue;
        const old = m.radixPages.get(leaf.phys)?.[bit >> 3] ?? 0;
        return [
          {
            phys: leaf.phys + BigInt(bit >> 3),
            bytes: Uint8Array.of(old | (1 << (bit & 7))),
            what: `leaf ${hexOf(leaf.phys)} bit ${bit}: an order-${leaf.order} chunk at ${hexOf(base + BigInt(bit) * size)} (RAM ends at ${hexOf(end)})`,
          },
        ];
      }
      return "no leaf of the tree reaches past the end of RAM";
    },
  },
  {
    id: "radix-scratch-bit",
    group: "radix",
    description:
      "a bit set in a leaf of the tree for a chunk inside a KHO scratch area (memory the next kernel boots in)",
    plan: (m) => {
      for (const leaf of m.leaves) {
        if (leaf.order === undefined || leaf.order > MAX_PAGE_ORDER) continue;
        const size = PAGE << BigInt(leaf.order);
        const base = leafBase(m, leaf.prefix, leaf.order);
        const windowEnd = base + BigInt(PAGE_SIZE * 8) * size;
        for (const s of m.scratch) {
          const from = (((s.start > base ? s.start : base) + size - 1n) / size) * size;
          if (from + size > s.end || from + size > windowEnd) continue;
          const bit = Number((from - base) / size);
          if (leaf.bits.includes(bit)) continue;
          const old = m.radixPages.get(leaf.phys)?.[bit >> 3] ?? 0;
          return [
            {
              phys: leaf.phys + BigInt(bit >> 3),
              bytes: Uint8Array.of(old | (1 << (bit & 7))),
              what: `leaf ${hexOf(leaf.phys)} bit ${bit}: an order-${leaf.order} chunk at ${hexOf(from)}, inside the scratch area ${hexOf(s.start)}-${hexOf(s.end)}`,
            },
          ];
        }
      }
      return m.scratch.length
        ? "no leaf of the tree covers a scratch area"
        : "the scratch areas are not known";
    },
  },
  {
    id: "radix-loop",
    group: "radix",
    description: "a free slot of a level-2 table points back at the root table (an ancestor: a cycle)",
    plan: (m) => {
      const t = m.tables.find((x) => x.level === 2);
      if (!t) return "the tree has no level-2 table";
      const used = new Set(t.entries.map((e) => e.index));
      const j = [...Array(PAGE_SIZE / 8).keys()].find((i) => !used.has(i));
      if (j === undefined) return "the level-2 table is full";
      return [
        {
          phys: t.phys + BigInt(j * 8),
          bytes: leU64(m.radixRoot),
          what: `level-2 table ${hexOf(t.phys)} entry ${j} -> the root table ${hexOf(m.radixRoot)}`,
        },
      ];
    },
  },
  {
    id: "luo-compatible",
    group: "luo",
    description: "LUO's serialized header names another ABI (luo-v4)",
    plan: (m) =>
      m.luo
        ? [{ phys: m.luo.serAt, bytes: chars("luo-v4", 8), what: "luo_ser compatible luo-v5 -> luo-v4" }]
        : "no LUO subtree",
  },
  {
    id: "luo-block-count",
    group: "luo",
    description: `the session block's entry count is one more than a block holds (${SESSIONS_PER_BLOCK + 1})`,
    plan: (m) => {
      const b = m.luo?.sessionBlocks[0];
      return b === undefined
        ? "no LUO session block"
        : [
            {
              phys: b + 8n,
              bytes: leU64(BigInt(SESSIONS_PER_BLOCK + 1)),
              what: `session block ${hexOf(b)} count -> ${SESSIONS_PER_BLOCK + 1}`,
            },
          ];
    },
  },
  {
    id: "luo-block-loop",
    group: "luo",
    description:
      "the session block's next pointer points at itself: a chain that loops (and so exceeds KHO_MAX_BLOCKS)",
    plan: (m) => {
      const b = m.luo?.sessionBlocks[0];
      return b === undefined
        ? "no LUO session block"
        : [{ phys: b, bytes: leU64(b), what: `session block ${hexOf(b)} next -> itself` }];
    },
  },
  {
    id: "luo-file-count",
    group: "luo",
    description: "a session's file count is one more than its file blocks hold",
    plan: (m) => {
      const s = m.luo?.sessions.find((x) => x.files.length > 0);
      return s
        ? [
            {
              phys: s.entryAt + 72n,
              bytes: leU64(BigInt(s.files.length + 1)),
              what: `session "${s.name}" count ${s.files.length} -> ${s.files.length + 1}`,
            },
          ]
        : "no LUO session with files";
    },
  },
  {
    id: "luo-file-handler",
    group: "luo",
    description: "a file entry names a handler no kernel has (bogus-v9)",
    plan: (m) => {
      const f = m.luo?.sessions.flatMap((s) => s.files)[0];
      return f
        ? [
            {
              phys: f.entryAt,
              bytes: chars("bogus-v9", 48),
              what: `file compatible ${f.compatible} -> bogus-v9`,
            },
          ]
        : "no LUO file";
    },
  },
  {
    id: "luo-memfd-size",
    group: "luo",
    description: "a memfd's size grows 256 MiB past what its folios hold",
    plan: (m) => {
      const f = m.luo?.sessions.flatMap((s) => s.files).find((x) => x.memfd)?.memfd;
      if (!f) return "no memfd in the handover";
      const to = f.size + (256n << 20n);
      return [
        {
          phys: f.serAt + 8n,
          bytes: leU64(to),
          what: `memfd size ${f.size} -> ${to} (${f.nrFolios} folios)`,
        },
      ];
    },
  },
  {
    id: "luo-folio-unpreserved",
    group: "luo",
    description: "a memfd folio entry points at a frame the tree does not preserve",
    plan: (m) => {
      const f = m.luo?.sessions
        .flatMap((s) => s.files)
        .find((x) => x.memfd?.firstFolioAt !== undefined)?.memfd;
      if (f?.firstFolioAt === undefined || f.firstFolioPfn === undefined) return "no memfd folio entry";
      const covered = (p: bigint) =>
        m.chunks.some((c) => p >= c.phys && p < c.phys + (PAGE << BigInt(c.order)));
      // the last 2 MiB-aligned frame of RAM below its last 16 MiB that nothing preserves
      let p = ((ramEnd(m) - (16n << 20n)) >> 21n) << 21n;
      while (p > 0n && covered(p)) p -= 2n << 20n;
      return [
        {
          phys: f.firstFolioAt,
          bytes: leU64(p / PAGE), // flags (bits 52..63) cleared
          what: `folio entry pfn ${hexOf(f.firstFolioPfn)} -> ${hexOf(p / PAGE)} (not preserved; flags cleared)`,
        },
      ];
    },
  },
  {
    id: "memblock-size",
    group: "memblock",
    description: "a reserve_mem region's size is four times what it is",
    plan: (m) => {
      const r = m.memblock?.regions[0];
      return r
        ? [
            {
              phys: r.sizeAt,
              bytes: leU64(r.size * 4n),
              what: `reserve_mem "${r.name}" size ${hexOf(r.size)} -> ${hexOf(r.size * 4n)}`,
            },
          ]
        : "no reserve_mem region";
    },
  },
  {
    id: "memblock-outside-ram",
    group: "memblock",
    description: "a reserve_mem region's start lies 1 GiB past the end of RAM",
    plan: (m) => {
      const r = m.memblock?.regions[0];
      const to = ramEnd(m) + (1n << 30n);
      return r
        ? [
            {
              phys: r.startAt,
              bytes: leU64(to),
              what: `reserve_mem "${r.name}" start ${hexOf(r.start)} -> ${hexOf(to)}`,
            },
          ]
        : "no reserve_mem region";
    },
  },
];

/** The case ids, in matrix order (for `kho list` and --case). */
export const CASE_IDS: readonly string[] = CORRUPT_CASES.map((c) => c.id);
