// Guest-physical memory for the decoders: only the pages a decoder touches are read, instead of
// dumping all of RAM to disk. Straight from QEMU's memory (ProcMemReader) when this host allows
// it, else through QMP `pmemsave` (a temp file per read). Which addresses are RAM is the
// caller's to say.
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { PhysMemory } from "../kho/abi.js";
import { ProcMemReader } from "../vm/guest-ram.js";
import type { Vm } from "../vm/qemu.js";

export class GuestPhysMemory implements PhysMemory {
  private n = 0;
  private direct: Promise<ProcMemReader | undefined> | undefined;
  /** Pages read so far (for the report: the decode should touch few). */
  bytesRead = 0;

  constructor(
    private readonly vm: Pick<Vm, "pid" | "qmp">,
    private readonly scratchDir: string,
  ) {}

  async readPhys(paddr: bigint, length: number): Promise<Uint8Array> {
    this.direct ??= ProcMemReader.open(this.vm.pid, this.vm.qmp);
    const data = (await this.direct)?.read(paddr, length) ?? (await this.viaPmemsave(paddr, length));
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
