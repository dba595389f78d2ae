// The JSON the test module (guest/kmod/kho_harness.c) writes to debugfs, one schema per file,
// checked when read: `status` (this kernel's preserve groups) and `report` (every entry the
// previous kernel handed over, whoever preserved it).
import { z } from "zod";

export const KmodEntrySchema = z.object({
  kind: z.string(),
  seed: z.number().optional(),
  restored: z.boolean().optional(),
  order: z.number(),
  phys: z.string().optional(),
  /** The node in the previous kernel (-1: a module without it), and after the restore. */
  nid_before: z.number().optional(),
  nid: z.number().optional(),
  zone: z.string().optional(),
  error: z.string().optional(),
  step: z.string().optional(),
  pattern_ok: z.boolean().optional(),
  head_ref: z.number().optional(),
  tail_ref_histogram: z.record(z.string(), z.number()).optional(),
  compound: z.boolean().optional(),
  folio_order: z.number().optional(),
  expected: z.object({ head_ref: z.number(), tail_ref: z.number(), compound: z.boolean() }).optional(),
  as_expected: z.boolean().optional(),
  freed: z.boolean().optional(),
});
export type KmodEntry = z.infer<typeof KmodEntrySchema>;

/** debugfs `report`. */
export const KmodReportSchema = z.object({ entries: z.array(KmodEntrySchema) });
export type KmodReport = z.infer<typeof KmodReportSchema>;

/** debugfs `status`. */
export const KmodStatusSchema = z.object({
  committed: z.boolean().optional(),
  entries: z.array(
    z.object({
      seed: z.number(),
      error: z.string().optional(),
      step: z.string().optional(),
      /** node= (-1: the allocator's choice), and the node each block came from. */
      node: z.number().optional(),
      phys: z.array(z.string()).optional(),
      nids: z.array(z.number()).optional(),
      /** Blocks below min_phys set aside before one above it came. */
      rejected: z.number().optional(),
    }),
  ),
});
export type KmodStatus = z.infer<typeof KmodStatusSchema>;
