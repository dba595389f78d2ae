// The old kernel's preserved-memory radix tree, read page by page (GuestPhysMemory) right
// before the kexec, while the guest runs on: the tree's pages are not preserved (the new kernel
// frees and reuses them), so they must be read in the old kernel, and nothing changes the tree
// while the agent holds its sessions. A few dozen pages instead of dumping all of RAM (1 GiB,
// ~2 s and a pause of the guest).
import { requireHostMemory } from "./access.js";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DecodeError } from "../errors.js";
import type { AgentKhoState } from "../agent/protocol.js";
import { FDT_MAGIC } from "../fdt/reader.js";
import { decodeKhoFdt, outFdtRadixRoot, type PhysMemory } from "../kho/abi.js";
import { type KhoAbi, type PreservedChunk, walkRadixTree } from "../kho/radix.js";
import type { Vm } from "../vm/qemu.js";
import type { MemoryScope } from "./scope.js";
import { GuestPhysMemory } from "./guest-memory.js";

const PAGE = 4096n;

export interface RamRange {
  readonly start: bigint;
  /** Exclusive. */
  readonly end: bigint;
}

export interface RadixSnapshot {
  readonly abi: KhoAbi;
  /** preserved-memory-map as the old kernel's out/fdt gives it. */
  readonly root: bigint;
  /** Every tree page, by physical address. */
  readonly pages: ReadonlyMap<bigint, Uint8Array>;
  /** What the tree marks preserved, as walked. */
  readonly chunks: readonly PreservedChunk[];
  readonly ram: readonly RamRange[];
  /** The pages and the RAM map as JSON in the artifacts (kept when the scenario fails). */
  readonly artifact: string;
  readonly readMs: number;
  /** Where the old kernel's whole root FDT lives (debugfs out/fdt is cut at its early size). */
  readonly rootFdtPhys?: bigint;
  /** The guest's memory as read for the snapshot, to read more of it at the kexec. */
  readonly live: GuestPhysMemory;
}

/** Top-level "System RAM" lines of /proc/iomem (read as root, so the addresses are real). */
export function parseSystemRam(iomem: string): RamRange[] {
  return [...iomem.matchAll(/^([0-9a-f]+)-([0-9a-f]+) : System RAM$/gm)].map((m) => ({
    start: BigInt(`0x${m[1] ?? "0"}`),
    end: BigInt(`0x${m[2] ?? "0"}`) + 1n,
  }));
}

export const inRam = (ram: readonly RamRange[]) => (paddr: bigint) =>
  ram.some((r) => paddr >= r.start && paddr < r.end);

const SEPARATOR = "--- iomem ---";

/** kho/out/fdt (base64, empty when absent) and /proc/iomem's System RAM lines, over SSH. */
async function readKhoState(ctx: MemoryScope): Promise<{ outFdt: string; iomem: string }> {
  const out = await ctx.guest.run(
    `base64 /sys/kernel/debug/kho/out/fdt 2>/dev/null; echo '${SEPARATOR}'; grep 'System RAM' /proc/iomem`,
  );
  const [outFdt = "", iomem = ""] = out.split(`${SEPARATOR}\n`);
  return { outFdt, iomem };
}

/**
 * Reads the radix root from kho/out/fdt and walks the tree live. When this kernel does not
 * allow it, the reason instead: out/fdt exists only in a cold-booted kernel, and a kernel whose
 * out/fdt or tree this harness cannot read gets the full dump. `state` is what the agent's
 * --kho-state gave, read over SSH when absent.
 */
export async function snapshotRadixTree(
  ctx: MemoryScope,
  state?: AgentKhoState,
): Promise<{ snapshot: RadixSnapshot } | { why: string }> {
  const { outFdt: b64, iomem } = state
    ? { outFdt: state.out_fdt ?? "", iomem: state.system_ram }
    : await readKhoState(ctx);
  if (!b64.trim()) return { why: "no kho/out/fdt in this boot (a kexec'd kernel has none)" };
  const ram = parseSystemRam(iomem);
  if (ram.length === 0) return { why: "no System RAM in /proc/iomem" };
  const started = performance.now();
  try {
    const { abi, root } = outFdtRadixRoot(Buffer.from(b64, "base64"));
    const live = new GuestPhysMemory(requireHostMemory(ctx.guest), ctx.artifactsDir);
    const pages = new Map<bigint, Uint8Array>();
    const chunks = await walkRadixTree({
      root,
      abi,
      isRam: inRam(ram),
      readPage: async (paddr) => {
        const page = await live.readPhys(paddr, Number(PAGE));
        pages.set(paddr, page);
        return page;
      },
    });
    const rootFdtPhys = await findRootFdt(live, chunks, root);
    const artifact = join(ctx.artifactsDir, "radix-before-kexec.json");
    await writeFile(artifact, snapshotJson(abi, root, ram, pages));
    const readMs = performance.now() - started;
    return {
      snapshot: {
        abi,
        root,
        pages,
        chunks,
        ram,
        artifact,
        readMs,
        live,
        ...(rootFdtPhys ? { rootFdtPhys } : {}),
      },
    };
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    return { why: `the old kernel's tree does not decode live (${err.message})` };
  }
}

/** The root FDT as it is in memory now: its header's totalsize, then that many bytes. */
export async function readRootFdt(mem: PhysMemory, phys: bigint): Promise<Uint8Array | undefined> {
  const header = await mem.readPhys(phys, 8);
  const view = new DataView(header.buffer, header.byteOffset, 8);
  const size = view.getUint32(4, false);
  if (view.getUint32(0, false) !== FDT_MAGIC || size < 40 || size > Number(PAGE)) return undefined;
  return mem.readPhys(phys, size);
}

/**
 * The page of the old kernel's root FDT: KHO allocates it with kho_alloc_preserve(PAGE_SIZE), so
 * it is one of the order-0 chunks, the one holding a KHO FDT whose preserved-memory-map is this
 * tree's root. debugfs gives only its first version's bytes, not its address; the subtrees that
 * came later (LUO at late_initcall, modules) are only in memory.
 */
async function findRootFdt(
  mem: PhysMemory,
  chunks: readonly PreservedChunk[],
  root: bigint,
): Promise<bigint | undefined> {
  for (const c of chunks) {
    if (c.order !== 0) continue;
    const bytes = await readRootFdt(mem, c.phys);
    if (!bytes) continue;
    try {
      if (decodeKhoFdt(bytes).preservedMemoryMap === root) return c.phys;
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
    }
  }
  return undefined;
}

function snapshotJson(
  abi: KhoAbi,
  root: bigint,
  ram: readonly RamRange[],
  pages: ReadonlyMap<bigint, Uint8Array>,
): string {
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  const doc = {
    abi,
    root: hex(root),
    ram: ram.map((r) => ({ start: hex(r.start), end: hex(r.end) })),
    pages: [...pages].map(([phys, bytes]) => ({
      phys: hex(phys),
      base64: Buffer.from(bytes).toString("base64"),
    })),
  };
  return JSON.stringify(doc, null, 1) + "\n";
}

/**
 * Memory for decoding the handed-over FDT after the kexec: tree pages from the snapshot, and
 * everything else (the subtrees' blobs, which are preserved and so still intact) read live.
 */
export class SnapshotMemory implements PhysMemory {
  private readonly live: GuestPhysMemory;

  constructor(
    private readonly snapshot: RadixSnapshot,
    vm: Pick<Vm, "pid" | "qmp">,
    scratchDir: string,
  ) {
    this.live = new GuestPhysMemory(vm, scratchDir);
  }

  readPhys(paddr: bigint, length: number): Promise<Uint8Array> {
    const first = paddr & ~(PAGE - 1n);
    const out = new Uint8Array(length);
    for (let page = first; page < paddr + BigInt(length); page += PAGE) {
      const bytes = this.snapshot.pages.get(page);
      if (!bytes) return this.live.readPhys(paddr, length);
      const from = page < paddr ? Number(paddr - page) : 0;
      const into = page < paddr ? 0 : Number(page - paddr);
      out.set(bytes.subarray(from, from + Math.min(Number(PAGE) - from, length - into)), into);
    }
    return Promise.resolve(out);
  }
}
