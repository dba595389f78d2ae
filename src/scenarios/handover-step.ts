// The host's decoding of a handover inside a scenario: in/fdt from the new kernel decoded against
// what was kept of the old kernel's memory (memory/handover.ts), its findings recorded
// (checks/handover.ts), and the checks that need the pause at the kexec recorded as not done
// when the pause gave nothing.
import type { ScenarioContext } from "../api/context.js";
import { bad } from "../api/findings.js";
import { DecodeError } from "../errors.js";
import { decodeKhoFdt } from "../kho/abi.js";
import { atKexecNotDone, handoverFindings } from "../checks/handover.js";
import {
  decodeHandover,
  type ClaimedRange,
  type HandoverReport,
  type PreKexecMemory,
} from "../memory/handover.js";

export interface HandoverStep {
  /** in/fdt as the agent's --kho-state gave it; read over SSH when absent. */
  readonly inFdt?: Uint8Array;
  /** false when the claims are frames that must NOT be in the map (the scenario checks that). */
  readonly claimsPreserved?: boolean;
}

/** Decodes and checks the handover; `report.notDone` says why the at-kexec checks were not done. */
export async function checkDecodedHandover(
  ctx: ScenarioContext,
  before: PreKexecMemory,
  claims: readonly ClaimedRange[],
  step: HandoverStep = {},
): Promise<HandoverReport & { readonly notDone: ReturnType<typeof atKexecNotDone> }> {
  const inFdt = step.inFdt ?? (await ctx.guest.readFile("/sys/kernel/debug/kho/in/fdt"));
  try {
    decodeKhoFdt(inFdt);
  } catch (err) {
    // The kernel under test handed over a root FDT that does not decode: its fault, with the
    // evidence. (Errors in the harness's own reading, a dump's ELF, stay errors.)
    if (!(err instanceof DecodeError)) throw err;
    await ctx.artifact("kho-in.dtb", inFdt);
    ctx.expect([
      bad(
        "handover.in-fdt",
        `the new kernel's kho/in/fdt does not decode: ${err.message}`,
        hexAround(inFdt, err.offset),
      ),
    ]);
  }
  const report = await decodeHandover(ctx, inFdt, before, claims);
  const findings = handoverFindings(report);
  ctx.expect(
    step.claimsPreserved === false ? findings.filter((f) => f.check !== "handover.frames-in-map") : findings,
  );
  const at = report.atKexec;
  if (at.kind === "read")
    ctx.fact({
      kind: "handover-pause",
      via: at.via.kind,
      detail: at.via.kind === "breakpoint" ? at.via.symbol : at.via.why,
      pausedMs: at.pausedMs,
      ...(at.via.kind === "breakpoint" ? { armMs: at.via.armMs } : {}),
    });
  const notDone = atKexecNotDone(report);
  if (notDone) ctx.notDone("handover.fdt-at-kexec", notDone.reason, notDone.detail);
  return { ...report, notDone };
}

/** The bytes around `offset` as hex lines of 16 (the evidence of data that does not decode). */
export function hexAround(bytes: Uint8Array, offset: number): string[] {
  const start = Math.max(0, (offset & ~15) - 32);
  const lines: string[] = [`${bytes.length} bytes; offset 0x${offset.toString(16)}:`];
  for (let at = start; at < Math.min(bytes.length, start + 80); at += 16) {
    const row = [...bytes.subarray(at, Math.min(bytes.length, at + 16))].map((b) =>
      b.toString(16).padStart(2, "0"),
    );
    lines.push(
      `${at.toString(16).padStart(8, "0")}: ${row.join(" ")}${at <= offset && offset < at + 16 ? "  <-" : ""}`,
    );
  }
  return lines;
}

/** The old kernel's KHO scratch areas, from debugfs (kho/out/scratch_phys and scratch_len). */
export async function scratchAreas(ctx: ScenarioContext): Promise<{ start: bigint; end: bigint }[]> {
  const out = await ctx.guest.run(
    "cat /sys/kernel/debug/kho/out/scratch_phys; echo --; cat /sys/kernel/debug/kho/out/scratch_len",
  );
  const [phys = "", len = ""] = out.split("--\n");
  const nums = (text: string) =>
    text
      .split("\n")
      .filter((l) => /^0x[0-9a-f]+$/.test(l.trim()))
      .map((l) => BigInt(l.trim()));
  const starts = nums(phys);
  const sizes = nums(len);
  return starts.map((start, i) => ({ start, end: start + (sizes[i] ?? 0n) })).filter((r) => r.end > r.start);
}
