// The JSON the guest agent prints (guest/agent/README.md has the full grammar). Only the
// fields the host checks are typed; the whole object is kept in the artifacts.

export interface AgentError {
  readonly ok: false;
  readonly command: string;
  readonly error: string;
  readonly errno: number;
  readonly errname: string | null;
  readonly step: string;
}

/** Runs of physical frames: [startPfn, count], startPfn null for pages not present. */
export type PfnRuns = readonly (readonly [number | null, number])[];

export interface AgentMemfd {
  readonly token: string;
  readonly size: number;
  readonly pos: number;
  readonly seals: number;
  /** null under the `nohash` option: `expected` alone vouches for the contents. */
  readonly sha256: string | null;
  readonly page_size: number;
  readonly pages: number;
  readonly pages_present: number;
  readonly pfns: PfnRuns | null;
  /** Page flags of the frames (root only); folio_orders counts whole folios by log2(pages). */
  readonly kpageflags?: {
    readonly compound_head: number;
    readonly thp: number;
    readonly huge: number;
    readonly folio_orders: Readonly<Record<string, number>>;
  } | null;
  /** Outcomes of the `probe-freeze` option: "ok" or an errname per operation. */
  readonly freeze_probe?: Readonly<Record<string, string>>;
  /** preserve: false when PRESERVE_FD failed under the `try` option (see preserve_error). */
  readonly preserved?: boolean;
  readonly preserve_error?: AgentErrno;
  readonly expected?: {
    readonly size: number;
    /** The model's hash; null under `nohash` when every byte matched. */
    readonly sha256: string | null;
    readonly match: boolean;
    readonly first_mismatch: number | null;
  };
}

/** An ioctl that was allowed to fail (the `try` memfd option). */
export interface AgentErrno {
  readonly errno: number;
  readonly errname: string;
}

/** restore with `try`, when RETRIEVE_FD failed: nothing else is reported for that token. */
export interface AgentMissingMemfd {
  readonly token: string;
  readonly retrieve_error: AgentErrno;
}

/** restore --after-finish: the finished session used again ("ok" or an errname each). */
export interface AgentAfterFinish {
  readonly retrieve_fd: readonly { readonly token: string; readonly result: string }[];
  readonly finish_again: string;
  readonly preserve_fd: string;
  readonly retrieve_session: string;
  readonly memfds: readonly {
    readonly token: string;
    readonly freeze_probe: Readonly<Record<string, string>>;
    readonly sha256: string;
  }[];
}

export interface AgentSession {
  readonly name: string;
  readonly memfds: readonly AgentMemfd[];
  readonly finished?: boolean;
  readonly after_finish?: AgentAfterFinish;
}

/** `--kho-state`: what the host's decoding of the handover reads (guest/agent/README.md). */
export interface AgentKhoState {
  /** debugfs kho/out/fdt, base64; null in a kexec'd kernel. */
  readonly out_fdt: string | null;
  /** debugfs kho/in/fdt, base64; null in a cold-booted kernel. */
  readonly in_fdt: string | null;
  /** The top-level "System RAM" lines of /proc/iomem. */
  readonly system_ram: string;
}

export interface AgentPreserveResult {
  readonly ok: true;
  readonly command: "preserve" | "restore";
  readonly luo: boolean;
  readonly boot_id: string | null;
  /** The agent's process id (a scenario may kill the holder). */
  readonly pid: number;
  readonly page_size: number;
  readonly sessions: readonly AgentSession[];
  readonly kho?: AgentKhoState;
  /** Where the agent's own time went (ms, summed over memfds). */
  readonly timings_ms?: Readonly<
    Record<"fill" | "preserve_fd" | "retrieve_fd" | "contents" | "pages" | "kexec_load", number>
  >;
}

export interface AgentInfo {
  readonly ok: true;
  readonly command: "info";
  readonly boot_id: string;
  readonly release: string;
  readonly cmdline: string;
  readonly liveupdate_dev: boolean;
  readonly page_size: number;
}

export type AgentOutput<T> = T | AgentError;

export function isAgentError(v: { ok: boolean }): v is AgentError {
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
