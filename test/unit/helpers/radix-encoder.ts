// Test-only KHO radix tree encoder: builds the tree the kernel's kho_radix_add_page()
// (kernel/liveupdate/kexec_handover.c:169-237) would build, into an in-memory page map. It is written
// from the kernel's documented encoding on purpose and shares no code with src/kho/radix.ts, so a
// round trip checks the walker against the ABI rather than against itself.

export interface EncodedRadixTree {
  readonly root: bigint;
  /** Tree pages (tables and leaves) by physical address, each one page long. */
  readonly pages: Map<bigint, Uint8Array>;
  readonly pageSize: number;
}

export interface EncodeOptions {
  /** PAGE_SHIFT; default 12. */
  readonly pageShift?: number;
  /** First physical address handed out for tree pages (bump allocator). Default 0x7000_0000. */
  readonly allocBase?: bigint;
}

export function encodeRadixTree(
  chunks: readonly { phys: bigint; order: number }[],
  options: EncodeOptions = {},
): EncodedRadixTree {
  const shift = options.pageShift ?? 12;
  const pageSize = 1 << shift;
  const order0 = 64 - shift; // KHO_ORDER_0_LOG2
  const tableBits = shift - 3; // KHO_TABLE_SIZE_LOG2: 512 u64 entries per 4K page
  const bitmapBits = shift + 3; // KHO_BITMAP_SIZE_LOG2: 32768 bits per 4K page
  const depth = Math.ceil((order0 - bitmapBits + 1) / tableBits) + 1; // KHO_TREE_MAX_DEPTH

  const pages = new Map<bigint, Uint8Array>();
  let next = options.allocBase ?? 0x7000_0000n;
  const alloc = (): bigint => {
    const at = next;
    next += BigInt(pageSize);
    pages.set(at, new Uint8Array(pageSize)); // get_zeroed_page()
    return at;
  };
  const page = (at: bigint): DataView => {
    const p = pages.get(at);
    if (!p) throw new Error(`encoder lost page 0x${at.toString(16)}`);
    return new DataView(p.buffer, p.byteOffset, p.byteLength);
  };

  const root = alloc();
  for (const { phys, order } of chunks) {
    if (phys % (BigInt(pageSize) << BigInt(order)) !== 0n) throw new Error("chunk not naturally aligned");
    // kho_radix_encode_key: the order bit above the order-shifted PFN.
    const key = (1n << BigInt(order0 - order)) | (phys >> BigInt(shift + order));
    let node = root;
    for (let level = depth - 1; level > 0; level--) {
      const idx = Number(
        (key >> BigInt((level - 1) * tableBits + bitmapBits)) & BigInt((1 << tableBits) - 1),
      );
      const view = page(node);
      let child = view.getBigUint64(idx * 8, true);
      if (child === 0n) {
        child = alloc();
        view.setBigUint64(idx * 8, child, true);
      }
      node = child;
    }
    const bit = Number(key & BigInt((1 << bitmapBits) - 1));
    // __set_bit on an unsigned long bitmap: on little-endian, byte bit>>3, bit bit&7.
    const leaf = pages.get(node);
    if (!leaf) throw new Error("encoder lost a leaf");
    leaf[bit >> 3] = (leaf[bit >> 3] ?? 0) | (1 << (bit & 7));
  }
  return { root, pages, pageSize };
}

/** readPage/isRam over an encoded tree: only the tree's own pages are "RAM". */
export function treeMemory(tree: EncodedRadixTree): {
  readPage: (paddr: bigint) => Promise<Uint8Array>;
  isRam: (paddr: bigint) => boolean;
} {
  return {
    readPage: (paddr) => {
      const p = tree.pages.get(paddr);
      return p
        ? Promise.resolve(p)
        : Promise.reject(new Error(`test bug: read of unmapped 0x${paddr.toString(16)}`));
    },
    isRam: (paddr) => tree.pages.has(paddr),
  };
}
