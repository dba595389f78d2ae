// Several scenarios on one guest with one kexec for all: a boot and a kexec cost ~7 s under
// TCG, the work of most memfd scenarios well under 2 s. Members take turns (one runs at a time,
// so a fault printed during a member's step is that member's), each preserves what it
// preserves, and its kexec call waits at a rendezvous until every member still running has
// arrived; then the next kernel is loaded once (members skip their own loads:
// kexecLoadsNextKernel), the last one's trigger kexecs the guest, and all go on in the new kernel.
import type { ExecResult, ExecStream } from "../vm/ssh.js";
import type { BootTiming } from "./boot-timeline.js";
import type { Guest } from "./guest.js";
import { GUEST_WORK_DIR, NEXT_KERNEL } from "./kexec.js";
import type { AtHandover, HandoverWork } from "./handover-pause.js";
import type { GuestMachine, GuestSession, SessionConsole } from "./session.js";

/** A mutex handed over in arrival order. */
export class Turn {
  private tail: Promise<void> = Promise.resolve();

  /** Resolves when it is the caller's turn, with the function that ends it. */
  acquire(): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const ready = this.tail.then(() => release);
    this.tail = this.tail.then(() => mine);
    return ready;
  }
}

type KexecCall = Parameters<GuestSession["kexec"]>;

interface Arrival {
  readonly call: KexecCall;
  readonly resolve: (r: SharedKexec) => void;
  readonly reject: (e: unknown) => void;
}

/** The one kexec, as each member sees it: when it started and ended, for the member's timings. */
export interface SharedKexec {
  readonly timing: BootTiming;
  readonly firedAt: number;
}

export class KexecRendezvous {
  private arrivals: Arrival[] = [];
  /** Performance time the current kexec started, for members whose wait ends in its failure. */
  firedAt = 0;

  /** `load` loads the next kernel once, after the last member arrived and before the kexec. */
  constructor(
    private readonly guest: Pick<Guest, "kexec">,
    private running: number,
    private readonly load: () => Promise<void> = () => Promise.resolve(),
  ) {}

  /** A member asks to kexec: resolves (or rejects) with the kexec all members share. */
  arrive(...call: KexecCall): Promise<SharedKexec> {
    const done = new Promise<SharedKexec>((resolve, reject) => this.arrivals.push({ call, resolve, reject }));
    this.fireWhenAllArrived();
    return done;
  }

  /** A member finished (or failed) and will not kexec again. */
  leave(): void {
    this.running--;
    this.fireWhenAllArrived();
  }

  private fireWhenAllArrived(): void {
    if (this.arrivals.length === 0 || this.arrivals.length < this.running) return;
    const batch = this.arrivals.splice(0);
    const last = batch[batch.length - 1];
    if (!last) return;
    this.firedAt = performance.now();
    const firedAt = this.firedAt;
    // The load is part of every member's kexec: the guest would not kexec without it.
    this.load()
      .then(() => this.guest.kexec(...last.call))
      .then(
        (timing) => batch.forEach((a) => a.resolve({ timing, firedAt })),
        (err: unknown) => batch.forEach((a) => a.reject(err)),
      );
  }
}

/** How a member gives its turn away while it waits at the rendezvous, and gets it back. */
export interface MemberTurn {
  readonly release: () => void;
  readonly reacquire: () => Promise<void>;
}

/**
 * A member of a shared guest: everything is the shared guest's, except that kexec goes through
 * the rendezvous (which loads the next kernel once for all: kexecLoadsNextKernel) and gives the
 * turn away while it waits. `waited` gets the time spent waiting for the other members, which
 * is not the member's own.
 */
export class SharedGuestMember implements GuestSession {
  readonly kexecLoadsNextKernel = true;
  readonly nextKernel = NEXT_KERNEL;
  readonly workDir = GUEST_WORK_DIR;

  constructor(
    private readonly guest: Guest,
    private readonly rendezvous: KexecRendezvous,
    private readonly turn: MemberTurn,
    private readonly waited: (ms: number) => void,
  ) {}

  get boot(): number {
    return this.guest.boot;
  }
  get logDir(): string {
    return this.guest.logDir;
  }
  get console(): SessionConsole {
    return this.guest.console;
  }
  get machine(): GuestMachine {
    return this.guest.machine;
  }
  exec(command: string, deadlineMs?: number): Promise<ExecResult> {
    return this.guest.exec(command, deadlineMs);
  }
  run(command: string, deadlineMs?: number): Promise<string> {
    return this.guest.run(command, deadlineMs);
  }
  readFile(path: string): Promise<Buffer> {
    return this.guest.readFile(path);
  }
  upload(source: string | Buffer, remotePath: string, mode?: number): Promise<void> {
    return this.guest.upload(source, remotePath, mode);
  }
  stream(command: string): Promise<ExecStream> {
    return this.guest.stream(command);
  }
  atNextHandover<T>(key: string, work: HandoverWork<T>): Promise<AtHandover<T>> {
    return this.guest.atNextHandover(key, work);
  }

  async kexec(...call: KexecCall): Promise<BootTiming> {
    const arrived = performance.now();
    this.turn.release();
    let firedAt = arrived;
    try {
      const shared = await this.rendezvous.arrive(...call);
      firedAt = shared.firedAt;
      return shared.timing;
    } catch (err) {
      firedAt = this.rendezvous.firedAt || arrived;
      throw err;
    } finally {
      const ended = performance.now();
      await this.turn.reacquire();
      this.waited(Math.max(0, firedAt - arrived) + (performance.now() - ended));
    }
  }
}

/**
 * Runs `count` members on one guest: each takes its turn (one runs at a time), kexecs through
 * the rendezvous (which loads the next kernel once, with `load`, after the last arrival), and
 * leaves it when done, whether it kexeced or not. `body` makes its member's session with the
 * callback that gets the time the member spent waiting for the others.
 */
export async function takeTurns<T>(
  guest: Guest,
  count: number,
  load: () => Promise<void>,
  body: (index: number, member: (waited: (ms: number) => void) => SharedGuestMember) => Promise<T>,
): Promise<T[]> {
  const rendezvous = new KexecRendezvous(guest, count, load);
  const turn = new Turn();
  return Promise.all(
    Array.from({ length: count }, async (_, index) => {
      let release = await turn.acquire();
      const memberTurn: MemberTurn = {
        release: () => release(),
        reacquire: async () => {
          release = await turn.acquire();
        },
      };
      try {
        return await body(index, (waited) => new SharedGuestMember(guest, rendezvous, memberTurn, waited));
      } finally {
        rendezvous.leave();
        release();
      }
    }),
  );
}
