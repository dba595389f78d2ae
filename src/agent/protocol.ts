// The JSON the guest agent prints (guest/agent/README.md has the full grammar), as one schema
// per command: the fields the host checks, validated when a line is parsed (agent/client.ts).
// Other fields are dropped from the parsed value; the artifacts keep the line as printed.

import { z } from "zod";

/** An ioctl or step that failed and ended the command. */
export const AgentErrorSchema = z.object({
  ok: z.literal(false),
  command: z.string(),
  error: z.string(),
  errno: z.number(),
  errname: z.string().nullable(),
  step: z.string(),
});
export type AgentError = z.infer<typeof AgentErrorSchema>;

/** Runs of physical frames: [startPfn, count], startPfn null for pages not present. */
const PfnRunsSchema = z.array(z.tuple([z.number().nullable(), z.number()]).readonly()).readonly();
export type PfnRuns = z.infer<typeof PfnRunsSchema>;

/** An ioctl that was allowed to fail (the `try` memfd option). */
const AgentErrnoSchema = z.object({ errno: z.number(), errname: z.string() });
export type AgentErrno = z.infer<typeof AgentErrnoSchema>;

/** "ok" or an errname, per operation. */
const OutcomesSchema = z.record(z.string(), z.string());

export const AgentMemfdSchema = z.object({
  token: z.string(),
  size: z.number(),
  pos: z.number(),
  seals: z.number(),
  /** null under the `nohash` option: `expected` alone vouches for the contents. */
  sha256: z.string().nullable(),
  page_size: z.number(),
  pages: z.number(),
  pages_present: z.number(),
  pfns: PfnRunsSchema.nullable(),
  /** Page flags of the frames (root only); folio_orders counts whole folios by log2(pages). */
  kpageflags: z
    .object({
      compound_head: z.number(),
      thp: z.number(),
      huge: z.number(),
      folio_orders: z.record(z.string(), z.number()),
    })
    .nullable()
    .optional(),
  /** Pages per NUMA node (move_pages), with the `node` option; a negative key is an errno. */
  nodes: z.record(z.string(), z.number()).optional(),
  /** Outcomes of the `probe-freeze` option. */
  freeze_probe: OutcomesSchema.optional(),
  /** preserve: false when PRESERVE_FD failed under the `try` option (see preserve_error). */
  preserved: z.boolean().optional(),
  preserve_error: AgentErrnoSchema.optional(),
  expected: z
    .object({
      size: z.number(),
      /** The model's hash; null under `nohash` when every byte matched. */
      sha256: z.string().nullable(),
      match: z.boolean(),
      first_mismatch: z.number().nullable(),
    })
    .optional(),
});
export type AgentMemfd = z.infer<typeof AgentMemfdSchema>;

/** restore with `try`, when RETRIEVE_FD failed: nothing else is reported for that token. */
export const AgentMissingMemfdSchema = z.object({ token: z.string(), retrieve_error: AgentErrnoSchema });
export type AgentMissingMemfd = z.infer<typeof AgentMissingMemfdSchema>;

/** restore --after-finish: the finished session used again ("ok" or an errname each). */
const AgentAfterFinishSchema = z.object({
  retrieve_fd: z.array(z.object({ token: z.string(), result: z.string() })),
  finish_again: z.string(),
  preserve_fd: z.string(),
  retrieve_session: z.string(),
  memfds: z.array(z.object({ token: z.string(), freeze_probe: OutcomesSchema, sha256: z.string() })),
});
export type AgentAfterFinish = z.infer<typeof AgentAfterFinishSchema>;

/** `--kho-state`: what the host's decoding of the handover reads (guest/agent/README.md). */
const AgentKhoStateSchema = z.object({
  /** debugfs kho/out/fdt, base64; null in a kexec'd kernel. */
  out_fdt: z.string().nullable(),
  /** debugfs kho/in/fdt, base64; null in a cold-booted kernel. */
  in_fdt: z.string().nullable(),
  /** The top-level "System RAM" lines of /proc/iomem. */
  system_ram: z.string(),
});
export type AgentKhoState = z.infer<typeof AgentKhoStateSchema>;

function preserveResult<M extends z.ZodType>(memfd: M) {
  return z.object({
    ok: z.literal(true),
    command: z.enum(["preserve", "restore"]),
    luo: z.boolean(),
    boot_id: z.string().nullable(),
    /** The agent's process id (a scenario may kill the holder). */
    pid: z.number(),
    page_size: z.number(),
    sessions: z.array(
      z.object({
        name: z.string(),
        memfds: z.array(memfd),
        finished: z.boolean().optional(),
        after_finish: AgentAfterFinishSchema.optional(),
      }),
    ),
    kho: AgentKhoStateSchema.optional(),
    /** Where the agent's own time went (ms, summed over memfds). */
    timings_ms: z
      .object({
        fill: z.number(),
        preserve_fd: z.number(),
        retrieve_fd: z.number(),
        contents: z.number(),
        pages: z.number(),
        kexec_load: z.number(),
      })
      .optional(),
  });
}

/** preserve / restore: every memfd reported in full. */
export const AgentPreserveResultSchema = preserveResult(AgentMemfdSchema);
export type AgentPreserveResult = z.infer<typeof AgentPreserveResultSchema>;
export type AgentSession = AgentPreserveResult["sessions"][number];

/** restore of memfds with the `try` option: a memfd whose RETRIEVE_FD failed has only its error. */
export const AgentTryRestoreResultSchema = preserveResult(
  z.union([AgentMissingMemfdSchema, AgentMemfdSchema]),
);
export type AgentTryRestoreResult = z.infer<typeof AgentTryRestoreResultSchema>;

export const AgentInfoSchema = z.object({
  ok: z.literal(true),
  command: z.literal("info"),
  boot_id: z.string(),
  release: z.string(),
  cmdline: z.string(),
  liveupdate_dev: z.boolean(),
  page_size: z.number(),
});
export type AgentInfo = z.infer<typeof AgentInfoSchema>;

/** Any successful command whose output the host does not read (kexec --load-only...). */
export const AgentOkSchema = z.object({ ok: z.literal(true), command: z.string() });

export function isAgentError(v: { readonly ok: boolean }): v is AgentError {
  return v.ok === false;
}

/** The frame of every page of the file, by page index (null where no page is present). */
export function pfnByPage(runs: PfnRuns): (number | null)[] {
  return runs.flatMap(([start, count]) =>
    Array.from({ length: count }, (_, i) => (start === null ? null : start + i)),
  );
}

/** Expands pfn runs into a list of physical page addresses (present pages only). */
export function pfnAddresses(runs: PfnRuns, pageSize: number): bigint[] {
  const out: bigint[] = [];
  for (const [start, count] of runs) {
    if (start === null) continue;
    for (let i = 0; i < count; i++) out.push(BigInt(start + i) * BigInt(pageSize));
  }
  return out;
}
