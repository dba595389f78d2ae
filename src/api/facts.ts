// Facts a result carries next to its human note: what a scenario established, typed, so a test
// or a history can assert `frames` without parsing a sentence. Each note may carry one.

import type { CorruptionOutcome } from "../corrupt/judge.js";

export type Fact =
  /** Memfds restored with the host's expected contents, on the frames they had. */
  | {
      readonly kind: "memfds-restored";
      readonly memfds: number;
      readonly sessions: number;
      readonly bytes: number;
      readonly frames: number;
    }
  /** A kexec: trigger to SSH in the new kernel. */
  | { readonly kind: "blackout"; readonly step: string; readonly totalMs: number }
  /** The host's decoding of the preserved-memory map. */
  | {
      readonly kind: "handover-map";
      readonly chunks: number;
      /** Frames the scenario preserved, every one found in the map. */
      readonly framesFound: number;
      readonly decodeMs: number;
    }
  /** The LUO state as the old kernel handed it over, read with the guest paused at the kexec. */
  | {
      readonly kind: "luo-handover";
      readonly sessions: number;
      readonly files: number;
      readonly folios: number;
    }
  /** Folios of a memfd by order (log2 pages), as the guest's kpageflags showed them. */
  | { readonly kind: "folios"; readonly memfd: string; readonly orders: Readonly<Record<string, number>> }
  /** A refusal the kernel had to give, and gave. */
  | { readonly kind: "errno"; readonly operation: string; readonly errname: string }
  /** A boot's kernel and, after a kexec, the `KHO: exec from` line it printed. */
  | {
      readonly kind: "boot";
      readonly boot: number;
      readonly release: string;
      readonly execFrom?: string;
      readonly execCount?: number;
    }
  /** A high-order page block of the test module, as the next kernel gave it back. */
  | {
      readonly kind: "page-block";
      readonly order: number;
      readonly tails: Readonly<Record<string, number>>;
      readonly compound: boolean;
      readonly pattern: boolean;
    }
  /** The guest's NUMA nodes as a boot's kernel saw them (/sys/devices/system/node). */
  | {
      readonly kind: "numa-topology";
      readonly boot: number;
      readonly nodes: readonly { readonly node: number; readonly cpus: string; readonly memKiB: number }[];
    }
  /** The test module's blocks on a NUMA guest: where each was asked for, found, and restored. */
  | {
      readonly kind: "numa-blocks";
      readonly blocks: readonly NumaBlock[];
    }
  /** The largest buddy order (MAX_PAGE_ORDER) of the kernel before and after the kexec. */
  | { readonly kind: "max-order"; readonly before: number; readonly after: number }
  /** How the guest was stopped at the handover (src/session/handover-pause.ts), and for how long. */
  | {
      readonly kind: "handover-pause";
      readonly via: "breakpoint" | "console";
      /** The breakpoint's symbol, or why the console line was used. */
      readonly detail: string;
      readonly pausedMs: number;
      /** Setting the breakpoint (the guest stopped meanwhile). */
      readonly armMs?: number;
    }
  /** A corruption case (src/corrupt): the writes made at the kexec pause and what the next kernel did. */
  | {
      readonly kind: "corruption";
      readonly case: string;
      readonly seed: number;
      readonly outcome: CorruptionOutcome;
      readonly writes: readonly {
        readonly phys: string;
        readonly what: string;
        readonly before: string;
        readonly after: string;
      }[];
    }
  /** One handover of `kho bench handover` (src/scenarios/handover-cost.ts): what was preserved,
   *  its phases (src/bench/handover-phases.ts) and memory figures (src/bench/handover-types.ts). */
  | {
      readonly kind: "handover-cost";
      readonly shape: string;
      readonly sizeBytes: number;
      readonly phasesMs: Readonly<Record<string, number>>;
      readonly memory: Readonly<Record<string, number>>;
    }
  /** Bytes the streams of `kexec-traffic` moved in all, and until the kexec was triggered. */
  | {
      readonly kind: "traffic";
      readonly upBytes: number;
      readonly downBytes: number;
      readonly upBytesAtTrigger: number;
      readonly downBytesAtTrigger: number;
      /** What the guest's eth0 sent and received in the window right before the trigger. */
      readonly windowTxBytes: number;
      readonly windowRxBytes: number;
      /** virtio_net.napi_tx as the guest ran it. */
      readonly napiTx: boolean;
    }
  /** What a race scenario counted (src/scenarios/luo-races.ts): outcomes by kind. */
  | { readonly kind: "race"; readonly race: string; readonly counts: Readonly<Record<string, number>> }
  /** A model-based run of /dev/liveupdate (src/uapi): what it covered, and its first mismatch. */
  | {
      readonly kind: "uapi-model";
      readonly phase: string;
      readonly seed: number;
      readonly runs: number;
      readonly ops: number;
      readonly kexecs: number;
      /** The minimal sequence's replay flags, when the kernel and the model disagreed. */
      readonly replay?: string;
      readonly minimalOps?: number;
    };

export interface NumaBlock {
  readonly kind: string;
  readonly order: number;
  readonly phys: string;
  /** The node= the block was allocated with. */
  readonly asked: number;
  /** page_to_nid() in the old kernel, and after the restore in the new one. */
  readonly before: number;
  readonly after: number | null;
  /** The node whose QEMU memory backend holds the frame (the machine's own answer). */
  readonly host: number | null;
  readonly zone: string | null;
}

export type FactKind = Fact["kind"];

/** The first fact of `kind` in `facts` (typed by kind). */
export function factOf<K extends FactKind>(
  facts: readonly Fact[] | undefined,
  kind: K,
): Extract<Fact, { kind: K }> | undefined {
  return facts?.find((f): f is Extract<Fact, { kind: K }> => f.kind === kind);
}
