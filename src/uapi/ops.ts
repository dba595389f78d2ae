// The operations of `kho-agent ops` (guest/agent/ops.c): one definition of each op, the line
// it is sent as, and the JSON line the agent answers with, validated when parsed.
import { z } from "zod";

/** Slots the agent has (ops.c MAX_SLOTS): fds are named 0..MAX_SLOTS-1. */
export const MAX_SLOTS = 1024;
/** Children it can fork (ops.c MAX_CHILDREN). */
export const MAX_CHILDREN = 16;

/** The ioctl argument's size field: the struct's size, one byte under the kernel's minimum,
 *  8 bytes more of zeros, or 8 bytes more with one not zero (copy_struct_from_user: E2BIG). */
export const SIZE_KINDS = ["exact", "short", "long0", "longx"] as const;
export type SizeKind = (typeof SIZE_KINDS)[number];

/** An ioctl's direction bits: none is what the uAPI uses; w and r make a cmd the kernel refuses. */
export type IoctlDir = "none" | "w" | "r";

export type Op =
  | { readonly op: "open"; readonly slot: number }
  | { readonly op: "close"; readonly slot: number }
  | {
      readonly op: "create" | "retrieve";
      readonly dev: number;
      readonly slot: number;
      /** The name's bytes as latin1 (at most 64; the kernel wants 1..63 and a NUL). */
      readonly name: string;
      readonly size: SizeKind;
    }
  | {
      readonly op: "preserve";
      readonly session: number;
      /** A slot, or "bad": fd -1. */
      readonly fd: number | "bad";
      readonly token: string;
      readonly size: SizeKind;
    }
  | {
      readonly op: "retrieve_fd";
      readonly session: number;
      readonly slot: number;
      readonly token: string;
      readonly size: SizeKind;
    }
  | {
      readonly op: "finish" | "get_name";
      readonly session: number;
      readonly reserved: number;
      readonly size: SizeKind;
    }
  | { readonly op: "raw"; readonly slot: number; readonly nr: number; readonly dir: IoctlDir }
  /** A memfd, or an O_TMPFILE in /dev/shm: shmem files without a link, which LUO preserves. */
  | { readonly op: "memfd" | "tmpfile"; readonly slot: number; readonly bytes: number; readonly seed: number }
  /** Files LUO has no handler for (a linked /dev/shm file is shmem, but has a link). */
  | { readonly op: "pipe" | "devnull" | "shmfile" | "grow"; readonly slot: number }
  | { readonly op: "fork" | "kill"; readonly child: number }
  | { readonly op: "reset" | "kexec" };

function hexName(name: string): string {
  return name === "" ? "-" : Buffer.from(name, "latin1").toString("hex");
}

/** The line the agent reads for `op`. */
export function opLine(op: Op): string {
  switch (op.op) {
    case "open":
    case "close":
    case "pipe":
    case "devnull":
    case "shmfile":
    case "grow":
      return `${op.op} ${op.slot}`;
    case "create":
    case "retrieve":
      return `${op.op} ${op.dev} ${op.slot} ${hexName(op.name)} ${op.size}`;
    case "preserve":
      return `preserve ${op.session} ${op.fd} ${op.token} ${op.size}`;
    case "retrieve_fd":
      return `retrieve_fd ${op.session} ${op.slot} ${op.token} ${op.size}`;
    case "finish":
    case "get_name":
      return `${op.op} ${op.session} ${op.reserved} ${op.size}`;
    case "raw":
      return `raw ${op.slot} ${op.nr} ${op.dir}`;
    case "memfd":
    case "tmpfile":
      return `${op.op} ${op.slot} ${op.bytes} ${op.seed}`;
    case "fork":
    case "kill":
      return `${op.op} ${op.child}`;
    case "reset":
    case "kexec":
      return op.op;
  }
}

/** A file the agent described: its contents' hash, size and inode. */
export const OpFileSchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  ino: z.number().int().nonnegative(),
});
export type OpFile = z.infer<typeof OpFileSchema>;

/** One answer line. `bad_line` is the agent refusing the line itself (a harness bug). */
export const OpResultSchema = z
  .object({
    op: z.string(),
    ok: z.boolean(),
    errno: z.number().int().optional(),
    errname: z.string().nullable().optional(),
    file: OpFileSchema.optional(),
    name: z.string().optional(),
    describe_error: z.string().optional(),
    /** What a race op counted (ops.c race_*). */
    race: z.record(z.string(), z.number().int()).optional(),
    bad_line: z.string().optional(),
  })
  .strict();
export type OpResult = z.infer<typeof OpResultSchema>;
