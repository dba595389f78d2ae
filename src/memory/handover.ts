// The host's own reading of the handover: the new kernel's kho/in/fdt (complete, unlike the
// old kernel's out/fdt) decoded against the old kernel's memory read right before the kexec,
// where the radix tree (whose pages are not preserved) is still intact. Then: is every frame
// the guest preserved in the map, and what else is in it.
import { requireHostMemory } from "./access.js";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ElfReader } from "../elf/reader.js";
import type { AgentKhoState } from "../agent/protocol.js";
import { decodeKho, formatKhoTree, toJson, type DecodedKho, type DecodedSubtree } from "../kho/abi.js";
import type { PreservedChunk } from "../kho/radix.js";
import { RangeIndex } from "../kho/range-index.js";
import type { MemoryScope } from "./scope.js";
import type { AtHandover, PauseVia } from "../session/handover-pause.js";
import {
  inRam,
  type RadixSnapshot,
  readRootFdt,
  SnapshotMemory,
  snapshotRadixTree,
} from "./radix-snapshot.js";

const PAGE = 4096n;

/**
 * The old kernel's memory as the host kept it: the radix tree's pages (read live, the usual
 * case), or a full ELF dump of RAM (taken with the guest paused) where out/fdt cannot give the
 * tree's root, e.g. in a kexec'd boot.
 */
export type PreKexecMemory =
  | {
      readonly kind: "radix";
      readonly snapshot: RadixSnapshot;
      /** The root FDT and subtrees as the old kernel left them, read at the kexec. */
      readonly atKexec?: Promise<AtHandover<HandoverState>>;
    }
  | { readonly kind: "dump"; readonly path: string };

/** The handover as the old kernel left it: its root FDT and the subtrees' decoded blobs. */
export interface HandoverState {
  readonly fdt: Uint8Array;
  readonly subtrees: readonly DecodedSubtree[];
}

/** Reads the root FDT and decodes every subtree blob in the paused guest (no radix walk: the
 *  snapshot has the tree). */
async function readHandoverState(
  snapshot: RadixSnapshot,
  fdtPhys: bigint,
): Promise<HandoverState | undefined> {
  const fdt = await readRootFdt(snapshot.live, fdtPhys);
  if (!fdt) return undefined;
  const decoded = await decodeKho(fdt, { memory: snapshot.live });
  return { fdt, subtrees: decoded.subtrees };
}

/**
 * Reads what the decode will need of the old kernel's memory, right before the kexec; `state`
 * is the agent's --kho-state when the scenario asked for it. `note` says what was kept.
 */
export async function readMemoryBeforeKexec(
  ctx: MemoryScope,
  state?: AgentKhoState,
): Promise<{ memory: PreKexecMemory; note: string }> {
  const taken = await snapshotRadixTree(ctx, state);
  if ("snapshot" in taken) {
    const s = taken.snapshot;
    const note = `radix tree read live: ${s.pages.size} pages in ${s.readMs.toFixed(0)} ms`;
    const fdtPhys = s.rootFdtPhys;
    if (fdtPhys === undefined) return { memory: { kind: "radix", snapshot: s }, note };
    return {
      memory: {
        kind: "radix",
        snapshot: s,
        atKexec: ctx.guest.atNextHandover(`kho-state@${fdtPhys}`, () => readHandoverState(s, fdtPhys)),
      },
      note,
    };
  }
  const path = join(ctx.artifactsDir, "memory-before-kexec.elf");
  const qmp = requireHostMemory(ctx.guest).qmp;
  await qmp.stop();
  try {
    await qmp.dumpGuestMemory(path);
  } finally {
    await qmp.cont();
  }
  const size = (await stat(path)).size;
  return {
    memory: { kind: "dump", path },
    note: `memory dump: ${(size / 1048576).toFixed(0)} MiB (${taken.why})`,
  };
}

export interface ClaimedRange {
  readonly owner: string;
  readonly start: bigint;
  readonly end: bigint;
}

export interface HandoverReport {
  readonly decoded: DecodedKho;
  readonly chunks: readonly PreservedChunk[];
  /** Frames a scenario preserved that the map does not contain. */
  readonly missing: readonly bigint[];
  /** Map ranges no scenario claimed, with their owner where the FDT names one. */
  readonly table: readonly { start: bigint; end: bigint; order: number; owner: string }[];
  readonly decodeMs: number;
  /** Where the subtrees' blobs were read: at the kexec, or live after it. */
  readonly subtreesReadAt: string;
  /** The subtrees are the old kernel's at the kexec (else blobs freed since may not decode). */
  readonly subtreesAtKexec: boolean;
  /** The radix root the old kernel's out/fdt gave, when the tree was read live. */
  readonly rootBeforeKexec: bigint | undefined;
  /** What the pause at the kexec gave: the root FDT compared with in/fdt, or why there is none. */
  readonly atKexec: AtKexecOutcome;
}

/** The read at the kexec pause, as the checks see it. */
export type AtKexecOutcome =
  | {
      readonly kind: "read";
      readonly sameFdt: boolean;
      readonly evidence: readonly string[];
      /** How the guest was stopped, and for how long. */
      readonly via: PauseVia;
      readonly pausedMs: number;
    }
  /** Nothing was asked for: the tree came from a full dump, or out/fdt gave no root FDT. */
  | { readonly kind: "not-asked"; readonly detail: string }
  | { readonly kind: "late" | "failed" | "missed"; readonly detail: string };

function chunkEnd(c: PreservedChunk): bigint {
  return c.phys + (PAGE << BigInt(c.order));
}

/**
 * Decodes in/fdt against the old kernel's memory; `claims` are what the scenario preserved. What
 * is wrong with it is for the checks (src/checks/handover.ts) to say.
 */
export async function decodeHandover(
  ctx: MemoryScope,
  inFdt: Uint8Array,
  before: PreKexecMemory,
  claims: readonly ClaimedRange[],
): Promise<HandoverReport> {
  const started = performance.now();
  const live = await decodeAgainst(ctx, inFdt, before);
  const decodeMs = performance.now() - started;
  await ctx.artifact("kho-in.dtb", inFdt);
  const { decoded, subtreesReadAt, subtreesAtKexec, atKexec } = await withSubtreesAtKexec(
    live,
    inFdt,
    before,
  );
  await ctx.artifact("handover.json", JSON.stringify(toJson(decoded), null, 2) + "\n");
  if (decoded.preservedMemoryError) await ctx.artifact("handover.txt", formatKhoTree(decoded) + "\n");
  const chunks = decoded.preservedMemory ?? [];
  // Claims win over subtrees; the indexes keep a shared guest's 70k chunks a matter of ms.
  const claimed = new RangeIndex(claims);
  const subtrees = new RangeIndex(
    decoded.subtrees.map((s) => ({
      owner: `FDT subtree ${s.name}`,
      start: s.phys,
      end: s.phys + (s.size ?? PAGE),
    })),
  );
  const ownerOf = (start: bigint, end: bigint) =>
    (claimed.find(start, end) ?? subtrees.find(start, end))?.owner ??
    "unclaimed (KHO/LUO metadata or another client)";
  const table = chunks.map((c) => ({
    start: c.phys,
    end: chunkEnd(c),
    order: c.order,
    owner: ownerOf(c.phys, chunkEnd(c)),
  }));
  const chunkIndex = new RangeIndex(table);
  const covered = (addr: bigint) => chunkIndex.find(addr, addr + 1n) !== undefined;
  const missing: bigint[] = [];
  for (const claim of claims) {
    for (let a = claim.start; a < claim.end; a += PAGE) if (!covered(a)) missing.push(a);
  }
  const hex = (v: bigint) => `0x${v.toString(16).padStart(10, "0")}`;
  const lines = [
    `KHO ABI ${decoded.abi}, radix root ${hex(decoded.preservedMemoryMap)}, ${chunks.length} preserved chunks, decoded in ${decodeMs.toFixed(0)} ms; ${subtreesReadAt}`,
    "start        end          order  owner",
    ...table.map((r) => `${hex(r.start)} ${hex(r.end)} ${String(r.order).padStart(5)}  ${r.owner}`),
  ];
  await ctx.artifact("preserved-map.txt", lines.join("\n") + "\n" + formatKhoTree(decoded) + "\n");
  return {
    decoded,
    chunks,
    missing,
    table,
    decodeMs,
    subtreesReadAt,
    subtreesAtKexec,
    rootBeforeKexec: before.kind === "radix" ? before.snapshot.root : undefined,
    atKexec,
  };
}

/**
 * The subtrees as the old kernel left them, when the pause at the kexec came in time and the new
 * kernel got the very FDT read then; otherwise as read after the kexec, where a blob its owner
 * freed at boot (LUO's root, luo_core.c) no longer decodes.
 */
async function withSubtreesAtKexec(
  live: DecodedKho,
  inFdt: Uint8Array,
  before: PreKexecMemory,
): Promise<{
  decoded: DecodedKho;
  subtreesReadAt: string;
  subtreesAtKexec: boolean;
  atKexec: AtKexecOutcome;
}> {
  const after = (atKexec: AtKexecOutcome) => ({
    decoded: live,
    subtreesReadAt: `subtrees read after the kexec (${atKexec.kind === "read" ? "" : atKexec.detail})`,
    subtreesAtKexec: false,
    atKexec,
  });
  if (before.kind === "dump")
    return after({ kind: "not-asked", detail: "the old kernel's memory came from a full dump" });
  if (!before.atKexec)
    return after({ kind: "not-asked", detail: "the old kernel's out/fdt gave no root FDT address" });
  const at = await before.atKexec;
  if (at.kind !== "read") return after(at);
  if (at.late)
    return after({ kind: "late", detail: "the pause at the kexec came after the new kernel's banner" });
  const sameFdt = Buffer.from(at.value.fdt).equals(Buffer.from(inFdt));
  return {
    decoded: { ...live, subtrees: at.value.subtrees },
    subtreesReadAt: `subtrees read at the kexec (guest paused ${at.pausedMs} ms, ${
      at.via.kind === "breakpoint"
        ? `at a breakpoint on ${at.via.symbol}`
        : `at the console line: ${at.via.why}`
    })`,
    subtreesAtKexec: sameFdt,
    atKexec: {
      kind: "read",
      via: at.via,
      pausedMs: at.pausedMs,
      sameFdt,
      evidence: [
        `at kexec ${at.value.fdt.length} bytes, in/fdt ${inFdt.length} bytes`,
        `first difference at offset ${firstDifference(at.value.fdt, inFdt)}`,
      ],
    },
  };
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

async function decodeAgainst(
  ctx: MemoryScope,
  inFdt: Uint8Array,
  before: PreKexecMemory,
): Promise<DecodedKho> {
  if (before.kind === "radix") {
    const memory = new SnapshotMemory(before.snapshot, requireHostMemory(ctx.guest), ctx.artifactsDir);
    return decodeKho(inFdt, { memory, isRam: inRam(before.snapshot.ram) });
  }
  const elf = await ElfReader.open(before.path);
  try {
    return await decodeKho(inFdt, { memory: elf, isRam: (p) => elf.isMapped(p) });
  } finally {
    await elf.close();
  }
}

/** What was kept of the old kernel's memory stays only when the scenario failed. */
export async function dropPreKexecMemory(before: PreKexecMemory): Promise<void> {
  await rm(before.kind === "dump" ? before.path : before.snapshot.artifact, { force: true });
}
