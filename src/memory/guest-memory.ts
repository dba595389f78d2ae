// Guest-physical memory for the decoders: only the pages a decoder touches are read, instead of
// dumping all of RAM to disk. Straight from QEMU's memory (ProcMemReader) when this host allows
// it, else through QMP `pmemsave` (a temp file per read). Which addresses are RAM is the
// caller's to say.
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { PhysMemory } from "../kho/abi.js";
import { ProcMemReader } from "../vm/guest-ram.js";
import type { Vm } from "../vm/qemu.js";

type QemuProcess = Pick<Vm, "pid" | "qmp">;

/** One direct reader per QEMU process: where its RAM lives does not change across kexecs, and
 *  finding out takes two HMP commands (tens of ms with a big `info mtree`). */
const directReaders = new WeakMap<QemuProcess, Promise<ProcMemReader | undefined>>();

/** The direct reader of `vm`'s RAM (undefined where this host does not allow one); the first
 *  call starts finding it, so a caller can start early and read later. */
export function directReader(vm: QemuProcess): Promise<ProcMemReader | undefined> {
  let reader = directReaders.get(vm);
  if (!reader) {
    reader = ProcMemReader.open(vm.pid, vm.qmp);
    directReaders.set(vm, reader);
  }
  return reader;
}

export class GuestPhysMemory implements PhysMemory {
  private n = 0;
  /** Pages read so far (for the report: the decode should touch few). */
  bytesRead = 0;

  constructor(
    private readonly vm: QemuProcess,
    private readonly scratchDir: string,
  ) {}

  async readPhys(paddr: bigint, length: number): Promise<Uint8Array> {
    const data =
      (await directReader(this.vm))?.read(paddr, length) ?? (await this.viaPmemsave(paddr, length));
    this.bytesRead += data.length;
    return data;
  }

  private async viaPmemsave(paddr: bigint, length: number): Promise<Uint8Array> {
    const path = join(this.scratchDir, `pmem-${this.n++}.bin`);
    await this.vm.qmp.pmemsave(paddr, length, path);
    try {
      return await readFile(path);
    } finally {
      await rm(path, { force: true });
    }
  }
}
