// kho_vmalloc (abi/kexec_handover.h:104-178): {u64 first; u32 total_pages; u16 flags; u16 order}, and a
// chain of one-page chunks {u64 next; u64 phys[511]} whose zero entry ends the chunk's list. Used by
// the subtrees that preserve vmalloc'ed arrays (kho_test's folio list, memfd's folio array).

import { type JsonValue, KhoBlobError, PAGE_SIZE, type PhysMemory, hex, structReader } from "./blob.js";

export interface KhoVmalloc {
  readonly first: bigint;
  readonly totalPages: number;
  /** KHO_VMALLOC_ALLOC 0x1, KHO_VMALLOC_HUGE_VMAP 0x2. */
  readonly flags: number;
  /** Page order of each contiguous run. */
  readonly order: number;
}

export function decodeKhoVmalloc(bytes: Uint8Array, phys = 0n, at = 0): KhoVmalloc {
  const r = structReader(bytes, "kho-vmalloc", phys);
  return { first: r.u64(at), totalPages: r.u32(at + 8), flags: r.u16(at + 12), order: r.u16(at + 14) };
}

/**
 * Read the first `length` bytes of a preserved vmalloc area. Walks the whole chunk chain like
 * kho_restore_vmalloc() (kexec_handover.c:1154-1240) so a wrong page count or a cycle is caught.
 */
export async function readKhoVmalloc(mem: PhysMemory, desc: KhoVmalloc, length: number): Promise<Uint8Array> {
  const fail = (phys: bigint, offset: number, reason: string): never => {
    throw new KhoBlobError("kho-vmalloc", phys, offset, reason);
  };
  if (desc.order > 20) fail(desc.first, 14, `run order ${desc.order} is implausible`);
  const runPages = 1 << desc.order;
  if (length > desc.totalPages * PAGE_SIZE) {
    fail(desc.first, 8, `area has ${desc.totalPages} pages, ${length} bytes were expected in it`);
  }
  const runs: bigint[] = [];
  const seen = new Set<bigint>();
  let pages = 0;
  for (let chunk = desc.first; chunk !== 0n;) {
    if (chunk % BigInt(PAGE_SIZE) !== 0n) fail(chunk, 0, "chunk is not page-aligned");
    if (seen.has(chunk)) fail(chunk, 0, "chunk list loops");
    seen.add(chunk);
    const page = await mem.readPhys(chunk, PAGE_SIZE);
    const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
    for (let i = 1; i < PAGE_SIZE / 8; i++) {
      const run = view.getBigUint64(i * 8, true);
      if (run === 0n) break;
      if (pages + runPages > desc.totalPages)
        fail(chunk, i * 8, `runs exceed total_pages ${desc.totalPages}`);
      runs.push(run);
      pages += runPages;
    }
    chunk = view.getBigUint64(0, true);
  }
  if (pages !== desc.totalPages)
    fail(desc.first, 8, `chunks hold ${pages} pages, total_pages is ${desc.totalPages}`);
  const out = new Uint8Array(length);
  const runBytes = runPages * PAGE_SIZE;
  for (let i = 0, done = 0; done < length; i++) {
    const run = runs[i];
    if (run === undefined) break;
    const take = Math.min(runBytes, length - done);
    out.set(await mem.readPhys(run, take), done);
    done += take;
  }
  return out;
}

export const vmallocJson = (v: KhoVmalloc): JsonValue => ({
  first: hex(v.first),
  totalPages: v.totalPages,
  flags: v.flags,
  order: v.order,
});
