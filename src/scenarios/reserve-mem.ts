// A reserve_mem= region handed over by KHO's memblock support (mm/memblock.c): the first kernel
// preserves every named region and describes it in the "memblock" subtree; the next kernel,
// given the same reserve_mem= parameter, revives the reservation at the same physical address
// ("Revived memory reservation '<name>' from KHO") instead of allocating a new one.
//
// Userspace reaches the region through its documented consumer, ftrace's persistent ring buffer
// (trace_instance=<name>@<region>, Documentation/admin-guide/kernel-parameters.txt): boot 1
// writes random marker lines with trace_marker, the kernel prints where it mapped the region.
// Boot 2 must map it at the same address and show boot 1's markers; the host finds the marker
// bytes at the same offsets in guest memory before and after, the region in the decoded
// memblock subtree, and every page of it in the preserved-memory map.
import { requireHostMemory } from "../memory/access.js";
import { randomBytes } from "node:crypto";
import { GuestPhysMemory } from "../memory/guest-memory.js";
import type { ScenarioContext } from "../api/context.js";
import { dropPreKexecMemory, readMemoryBeforeKexec } from "../memory/handover.js";
import { checkDecodedHandover } from "./handover-step.js";
import { kexecWithAgent } from "./kexec-step.js";
import { CheckFailed } from "../api/outcome.js";
import type { Scenario } from "../api/scenario.js";

const REGION = "harness_rm"; // RESERVE_MEM_NAME_SIZE is 16
const SIZE = 2 * 1024 * 1024;
const INSTANCE = `/sys/kernel/tracing/instances/${REGION}`;
const MARKERS = 8;
const PAGE = 4096n;

interface Mapping {
  readonly start: bigint;
  readonly size: bigint;
}

/** trace.c: "Tracing: mapped boot instance <name> at physical memory <%pa> of size 0x<%lx>". */
async function mappedRegion(ctx: ScenarioContext, boot: number): Promise<{ map: Mapping; dmesg: string }> {
  const dmesg = await ctx.guest.run("dmesg");
  await ctx.artifact(`dmesg-boot${boot}-reserve-mem.txt`, dmesg);
  const m = new RegExp(
    `Tracing: mapped boot instance ${REGION} at physical memory (0x[0-9a-f]+) of size (0x[0-9a-f]+)`,
  ).exec(dmesg);
  if (!m?.[1] || !m[2]) {
    throw new CheckFailed(
      `boot ${boot}: the kernel did not map the trace instance onto reserve_mem region ${REGION}`,
      [
        ...dmesg
          .split("\n")
          .filter((l) => /reserve_mem|reserve-mem|Tracing|boot instance/i.test(l))
          .slice(0, 12),
      ],
    );
  }
  return { map: { start: BigInt(m[1]), size: BigInt(m[2]) }, dmesg };
}

/** Byte offsets of every occurrence of `needle` in `hay`. */
function offsetsOf(hay: Uint8Array, needle: string): number[] {
  const buf = Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength);
  const out: number[] = [];
  for (let at = buf.indexOf(needle); at >= 0; at = buf.indexOf(needle, at + 1)) out.push(at);
  return out;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

export const reserveMem: Scenario = {
  id: "reserve-mem",
  description: `a reserve_mem=2M region (${REGION}) carried by KHO's memblock support: markers written through its persistent trace buffer in boot 1 are at the same physical address and readable in boot 2`,
  needs: ["kho", "kho-debugfs", "tracing"],
  boot: {
    kho: true,
    append: `reserve_mem=${SIZE / 1048576}M:4096:${REGION} trace_instance=${REGION}@${REGION}`,
  },
  // The region and its trace instance are this scenario's alone, whoever else runs on the guest.
  shareable: true,
  async run(ctx) {
    const before = await mappedRegion(ctx, 1);
    ctx.check(before.map.size === BigInt(SIZE), `the region is ${before.map.size} bytes, asked for ${SIZE}`);
    const nonce = randomBytes(8).toString("hex");
    const tag = `kho-harness reserve_mem ${nonce}`;
    await ctx.phase("write", () =>
      ctx.guest.run(
        `for i in $(seq 1 ${MARKERS}); do echo "${tag} $i" > ${INSTANCE}/trace_marker || exit 1; done`,
      ),
    );
    const trace1 = await ctx.guest.run(`cat ${INSTANCE}/trace`);
    await ctx.artifact("trace-boot1.txt", trace1);
    const count = (text: string) => (text.match(new RegExp(`${tag} \\d+`, "g")) ?? []).length;
    ctx.check(count(trace1) === MARKERS, `boot 1: the trace shows ${count(trace1)} of ${MARKERS} markers`, [
      ...trace1.split("\n").slice(-6),
    ]);

    const { memory: dump, note: kept } = await ctx.phase("dump", () => readMemoryBeforeKexec(ctx));
    ctx.note(kept);
    const mem = new GuestPhysMemory(requireHostMemory(ctx.guest), ctx.artifactsDir);
    const at1 = offsetsOf(await mem.readPhys(before.map.start, SIZE), tag);
    ctx.check(
      at1.length >= MARKERS,
      `boot 1: guest memory holds ${at1.length} markers in ${REGION} at ${hex(before.map.start)}`,
    );

    await kexecWithAgent(ctx);

    const after = await mappedRegion(ctx, 2);
    await ctx.phase("checks", async () => {
      ctx.check(
        after.dmesg.includes(`Revived memory reservation '${REGION}' from KHO`),
        `boot 2 allocated ${REGION} anew instead of reviving it from KHO`,
        after.dmesg
          .split("\n")
          .filter((l) => /reserve.mem|memblock|KHO/i.test(l))
          .slice(0, 12),
      );
      ctx.check(
        after.map.start === before.map.start && after.map.size === before.map.size,
        `boot 2 mapped ${REGION} at ${hex(after.map.start)} (+${hex(after.map.size)}), boot 1 at ${hex(before.map.start)} (+${hex(before.map.size)})`,
      );
      const trace2 = await ctx.guest.run(`cat ${INSTANCE}/trace`);
      await ctx.artifact("trace-boot2.txt", trace2);
      ctx.check(
        count(trace2) === MARKERS,
        `boot 2: the trace shows ${count(trace2)} of boot 1's ${MARKERS} markers`,
        [...trace2.split("\n").slice(0, 12)],
      );

      const at2 = offsetsOf(await mem.readPhys(before.map.start, SIZE), tag);
      ctx.check(
        JSON.stringify(at2) === JSON.stringify(at1),
        `boot 2: the marker bytes are not where boot 1 wrote them in ${REGION}`,
        [`boot 1 offsets ${JSON.stringify(at1)}`, `boot 2 offsets ${JSON.stringify(at2)}`],
      );

      const claims = [
        { owner: `reserve_mem ${REGION}`, start: before.map.start, end: before.map.start + before.map.size },
      ];
      // every page of the region in the map, among the handover's own findings
      const report = await checkDecodedHandover(ctx, dump, claims);
      const memblock = report.decoded.subtrees.find((s) => s.name === "memblock")?.blob;
      const region =
        memblock?.kind === "memblock" ? memblock.regions.find((r) => r.name === REGION) : undefined;
      ctx.check(
        region?.start === before.map.start && region.size === before.map.size,
        `the decoded memblock subtree does not describe ${REGION} at ${hex(before.map.start)}`,
        [
          JSON.stringify(
            memblock?.kind === "memblock"
              ? memblock.regions.map((r) => [r.name, hex(r.start), hex(r.size)])
              : (memblock ?? null),
          ),
        ],
      );
      ctx.note(
        `${REGION} revived at ${hex(before.map.start)} (2 MiB): ${MARKERS} markers readable in boot 2 at the same ${at1.length} offsets; memblock subtree and all ${before.map.size / PAGE} pages in the decoded KHO map`,
      );
      await dropPreKexecMemory(dump);
    });
  },
};
