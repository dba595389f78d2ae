// Guest-physical memory read through QMP `pmemsave`: only the pages a decoder touches are read,
// instead of dumping all of RAM to disk. Which addresses are RAM is the caller's to say.
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { PhysMemory } from "../kho/abi.js";
import type { QmpClient } from "../vm/qmp.js";

export class QmpMemory implements PhysMemory {
  private n = 0;
  /** Pages read so far (for the report: the decode should touch few). */
  bytesRead = 0;

  constructor(
    private readonly qmp: QmpClient,
    private readonly scratchDir: string,
  ) {}

  async readPhys(paddr: bigint, length: number): Promise<Uint8Array> {
    const path = join(this.scratchDir, `pmem-${this.n++}.bin`);
    await this.qmp.pmemsave(paddr, length, path);
    try {
      const data = await readFile(path);
      this.bytesRead += data.length;
      return data;
    } finally {
      await rm(path, { force: true });
    }
  }
}
