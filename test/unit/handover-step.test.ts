// A handover whose in/fdt does not decode is the kernel's fault: a failed check naming the offset
// with the bytes around it, not a harness error.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CheckFailed } from "../../src/api/outcome.js";
import type { PreKexecMemory } from "../../src/memory/handover.js";
import { RunContext } from "../../src/orchestrate/context.js";
import { checkDecodedHandover, hexAround } from "../../src/scenarios/handover-step.js";
import type { GuestSession } from "../../src/session/session.js";

const dirs: string[] = [];
afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function context(): Promise<RunContext> {
  const dir = await mkdtemp(join(tmpdir(), "handover-step-"));
  dirs.push(dir);
  const guest = { machine: { pid: 0, qmp: {} } } as unknown as GuestSession;
  return new RunContext({}, "x86_64", guest, {} as never, dir, () => undefined, 1024);
}

const before = {
  kind: "radix",
  snapshot: { abi: "v3", root: 0n, pages: new Map(), chunks: [], ram: [], artifact: "", readMs: 0, live: {} },
} as unknown as PreKexecMemory;

describe("a handover that does not decode", () => {
  it("fails the scenario with the offset and the bytes, and keeps the FDT", async () => {
    const ctx = await context();
    const garbage = Uint8Array.from({ length: 64 }, (_, i) => (i * 37) & 0xff);
    const err = await checkDecodedHandover(ctx, before, [], { inFdt: garbage }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckFailed);
    expect((err as CheckFailed).message).toMatch(
      /^the new kernel's kho\/in\/fdt does not decode: fdt: .* at offset 0x0$/,
    );
    expect((err as CheckFailed).evidence[0]).toBe("64 bytes; offset 0x0:");
    expect((err as CheckFailed).evidence[1]).toBe(
      "00000000: 00 25 4a 6f 94 b9 de 03 28 4d 72 97 bc e1 06 2b  <-",
    );
    expect(ctx.checks).toEqual([
      { check: "handover.in-fdt", status: "failed", detail: (err as CheckFailed).message },
    ]);
    expect(await readdir(ctx.artifactsDir)).toContain("kho-in.dtb");
  });

  it("hexAround shows the rows around the offset and marks its row", () => {
    const bytes = new Uint8Array(256).map((_, i) => i);
    expect(hexAround(bytes, 0x45)).toEqual([
      "256 bytes; offset 0x45:",
      "00000020: 20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f",
      "00000030: 30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f",
      "00000040: 40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f  <-",
      "00000050: 50 51 52 53 54 55 56 57 58 59 5a 5b 5c 5d 5e 5f",
      "00000060: 60 61 62 63 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f",
    ]);
  });
});
