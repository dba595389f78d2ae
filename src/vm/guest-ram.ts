// Guest-physical memory read straight from QEMU's address space (/proc/<pid>/mem at the host
// address QEMU maps guest RAM to), with no QMP round trip or temp file per read: ~4 ms a page
// through `pmemsave`, microseconds this way. Where guest RAM lives in QEMU comes from QEMU
// itself: `info mtree -f` maps guest-physical ranges to offsets in a RAM block, and
// `info ramblock` gives each block's host address.
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import type { QmpClient } from "./qmp.js";

/** One guest-physical range backed by host memory: [start, end) at `hva` (host address). */
export interface RamWindow {
  readonly start: bigint;
  readonly end: bigint;
  readonly hva: bigint;
  /** QEMU's RAM block: `pc.ram`, `mach-virt.ram`, or `ram-nodeN` on a NUMA guest (qemu.ts). */
  readonly block: string;
}

/** Block name -> host address of its first byte, from HMP `info ramblock`. */
export function parseRamblocks(text: string): Map<string, bigint> {
  const blocks = new Map<string, bigint>();
  for (const line of text.split("\n")) {
    // "pc.ram  4 KiB  0x0...0 0x...used 0x...total 0x00007fbec3e00000  rw"
    const m = /^\s*(\S+)\s+\d+\s+\S+\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\b/i.exec(line);
    if (m?.[1] && m[2]) blocks.set(m[1], BigInt(`0x${m[2]}`));
  }
  return blocks;
}

/**
 * The RAM ranges of the flat view of address space "memory" in `info mtree -f` (the system
 * memory every CPU sees; the views' order changes as the guest programs its chipset):
 * "0000000000100000-000000007fffffff (prio 0, ram): pc.ram @0000000000100000", the "@offset"
 * into the region absent when it is 0. ROM and I/O ranges are left out.
 */
export function ramWindows(mtree: string, blocks: ReadonlyMap<string, bigint>): RamWindow[] {
  const view = mtree.split(/^FlatView #\d+/m).find((v) => /^\s*AS "memory",/m.test(v)) ?? "";
  const windows: RamWindow[] = [];
  for (const m of view.matchAll(
    /^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ram\): (\S+)(?: @([0-9a-f]+))?/gim,
  )) {
    const base = blocks.get(m[3] ?? "");
    if (base === undefined) continue;
    const start = BigInt(`0x${m[1]}`);
    windows.push({
      start,
      end: BigInt(`0x${m[2]}`) + 1n,
      hva: base + BigInt(`0x${m[4] ?? "0"}`),
      block: m[3] ?? "",
    });
  }
  return windows;
}

/** The guest-physical RAM ranges of a running QEMU, from QEMU itself (QMP, no guest involved). */
export async function qemuRamWindows(qmp: QmpClient): Promise<RamWindow[]> {
  const blocks = parseRamblocks(await qmp.humanMonitorCommand("info ramblock"));
  return ramWindows(await qmp.humanMonitorCommand("info mtree -f"), blocks);
}

/**
 * The NUMA node QEMU backs a RAM window with: N for block `ram-nodeN` (qemu.ts names each node's
 * backend so), 0 for the machine's single RAM block.
 */
export function windowNode(w: RamWindow): number {
  const m = /^ram-node(\d+)$/.exec(w.block);
  return m ? Number(m[1]) : 0;
}

/** The node of guest-physical address `paddr`, or undefined outside RAM. */
export function nodeOfAddress(windows: readonly RamWindow[], paddr: bigint): number | undefined {
  const w = windows.find((x) => paddr >= x.start && paddr < x.end);
  return w ? windowNode(w) : undefined;
}

/** The windows as JSON (addresses in hex): an artifact, and a fixture's format. */
export function ramWindowsJson(windows: readonly RamWindow[]): string {
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  const rows = windows.map((w) => ({ start: hex(w.start), end: hex(w.end), block: w.block }));
  return JSON.stringify(rows, null, 1) + "\n";
}

export class ProcMemReader {
  private constructor(
    private readonly memPath: string,
    private readonly windows: readonly RamWindow[],
  ) {}

  /**
   * A reader for QEMU process `pid`, or undefined when its memory cannot be opened (another
   * user's QEMU, Yama ptrace restrictions) or its RAM layout cannot be read: callers fall back
   * to `pmemsave`.
   */
  static async open(pid: number, qmp: QmpClient): Promise<ProcMemReader | undefined> {
    try {
      const windows = await qemuRamWindows(qmp);
      if (windows.length === 0) return undefined;
      // Opened per read, so nothing is left open for a caller to close.
      closeSync(openSync(`/proc/${pid}/mem`, "r"));
      return new ProcMemReader(`/proc/${pid}/mem`, windows);
    } catch {
      return undefined;
    }
  }

  /**
   * The bytes, or undefined when the range is not inside one RAM window (or the read fails).
   * Synchronous on purpose: three syscalls of microseconds, where the thread pool's round trips
   * cost more than the read.
   */
  read(paddr: bigint, length: number): Uint8Array | undefined {
    const end = paddr + BigInt(length);
    const w = this.windows.find((x) => paddr >= x.start && end <= x.end);
    if (!w) return undefined;
    const out = new Uint8Array(length);
    let fd: number | undefined;
    try {
      fd = openSync(this.memPath, "r");
      const got = readSync(fd, out, 0, length, Number(w.hva + (paddr - w.start)));
      return got === length ? out : undefined;
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /**
   * Writes `data` at `paddr` of the guest's RAM (the corruption matrix, with the guest paused and
   * every address checked against the handover first: src/corrupt/guard.ts). False when the range
   * is not inside one RAM window or the write fails.
   */
  write(paddr: bigint, data: Uint8Array): boolean {
    const end = paddr + BigInt(data.length);
    const w = this.windows.find((x) => paddr >= x.start && end <= x.end);
    if (!w) return false;
    let fd: number | undefined;
    try {
      fd = openSync(this.memPath, "r+");
      return writeSync(fd, data, 0, data.length, Number(w.hva + (paddr - w.start))) === data.length;
    } catch {
      return false;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
}
