// The host's own reading of the handover: the new kernel's kho/in/fdt (complete, unlike the
// old kernel's out/fdt) decoded against a memory dump taken right before the kexec, where the
// radix tree (whose pages are not preserved) is still intact. Then: is every frame the guest
// preserved in the map, and what else is in it.
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ElfReader } from "../elf/reader.js";
import { decodeKho, formatKhoTree, toJson, type DecodedKho } from "../kho/abi.js";
import type { PreservedChunk } from "../kho/radix.js";
import type { ScenarioContext } from "./context.js";

const PAGE = 4096n;

/** Pauses the guest, dumps its RAM to an ELF file in the artifacts, resumes. */
export async function dumpBeforeKexec(ctx: ScenarioContext): Promise<string> {
  const path = join(ctx.artifactsDir, "memory-before-kexec.elf");
  const qmp = ctx.guest.vm.qmp;
  await qmp.stop();
  try {
    await qmp.dumpGuestMemory(path);
  } finally {
    await qmp.cont();
  }
  const size = (await stat(path)).size;
  ctx.note(`memory dump: ${(size / 1048576).toFixed(0)} MiB`);
  return path;
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
}

function chunkEnd(c: PreservedChunk): bigint {
  return c.phys + (PAGE << BigInt(c.order));
}

/** Decodes in/fdt against the dump; `claims` are the ranges the scenario knows it preserved. */
export async function checkHandover(
  ctx: ScenarioContext,
  inFdt: Uint8Array,
  dumpPath: string,
  claims: readonly ClaimedRange[],
): Promise<HandoverReport> {
  const started = performance.now();
  const elf = await ElfReader.open(dumpPath);
  let decoded: DecodedKho;
  try {
    decoded = await decodeKho(inFdt, { memory: elf, isRam: (p) => elf.isMapped(p) });
  } finally {
    await elf.close();
  }
  const decodeMs = performance.now() - started;
  await ctx.artifact("kho-in.dtb", inFdt);
  await ctx.artifact("handover.json", JSON.stringify(toJson(decoded), null, 2) + "\n");
  if (decoded.preservedMemoryError) {
    await ctx.artifact("handover.txt", formatKhoTree(decoded) + "\n");
    ctx.check(
      false,
      `the preserved-memory radix tree does not decode: ${decoded.preservedMemoryError.message}`,
    );
  }
  const chunks = decoded.preservedMemory ?? [];
  const owners: ClaimedRange[] = [
    ...claims,
    ...decoded.subtrees.map((s) => ({
      owner: `FDT subtree ${s.name}`,
      start: s.phys,
      end: s.phys + (s.size ?? PAGE),
    })),
  ];
  const ownerOf = (start: bigint, end: bigint) =>
    owners.find((o) => o.start < end && start < o.end)?.owner ??
    "unclaimed (KHO/LUO metadata or another client)";
  const table = chunks.map((c) => ({
    start: c.phys,
    end: chunkEnd(c),
    order: c.order,
    owner: ownerOf(c.phys, chunkEnd(c)),
  }));
  const covered = (addr: bigint) => chunks.some((c) => c.phys <= addr && addr < chunkEnd(c));
  const missing: bigint[] = [];
  for (const claim of claims) {
    for (let a = claim.start; a < claim.end; a += PAGE) if (!covered(a)) missing.push(a);
  }
  const hex = (v: bigint) => `0x${v.toString(16).padStart(10, "0")}`;
  const lines = [
    `KHO ABI ${decoded.abi}, radix root ${hex(decoded.preservedMemoryMap)}, ${chunks.length} preserved chunks, decoded in ${decodeMs.toFixed(0)} ms`,
    "start        end          order  owner",
    ...table.map((r) => `${hex(r.start)} ${hex(r.end)} ${String(r.order).padStart(5)}  ${r.owner}`),
  ];
  await ctx.artifact("preserved-map.txt", lines.join("\n") + "\n" + formatKhoTree(decoded) + "\n");
  return { decoded, chunks, missing, table, decodeMs };
}

/** The dump is large: keep it only when the scenario failed. */
export async function dropDump(path: string): Promise<void> {
  await rm(path, { force: true });
}
