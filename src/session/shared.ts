// Several scenarios on one guest with one kexec for all: a boot and a kexec cost ~7 s under
// TCG, the work of most memfd scenarios well under 2 s. Members take turns (one runs at a time,
// so a fault printed during a member's step is that member's), each preserves what it
// preserves, and its kexec call waits at a rendezvous until every member still running has
// arrived; then the next kernel is loaded once (members skip their own loads: loadsAtKexec),
// the last one's trigger kexecs the guest, and all go on in the new kernel.
import type { Guest } from "./guest.js";
import type { BootTiming } from "./boot-timeline.js";

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

type KexecCall = Parameters<Guest["kexec"]>;

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
    private readonly guest: Guest,
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

/**
 * The guest as one member sees it: everything is the shared guest's, except that kexec goes
 * through the rendezvous and gives the turn away while it waits. `waited` gets the time spent
 * waiting for the other members, which is not the member's own.
 */
export function memberGuest(
  guest: Guest,
  rendezvous: KexecRendezvous,
  turn: { release: () => void; reacquire: () => Promise<void> },
  waited: (ms: number) => void,
): Guest {
  const kexec = async (...call: KexecCall): Promise<BootTiming> => {
    const arrived = performance.now();
    turn.release();
    let firedAt = arrived;
    try {
      const shared = await rendezvous.arrive(...call);
      firedAt = shared.firedAt;
      return shared.timing;
    } catch (err) {
      firedAt = rendezvous.firedAt || arrived;
      throw err;
    } finally {
      const ended = performance.now();
      await turn.reacquire();
      waited(Math.max(0, firedAt - arrived) + (performance.now() - ended));
    }
  };
  return new Proxy(guest, {
    get(target, prop, receiver) {
      if (prop === "kexec") return kexec;
      if (prop === "loadsAtKexec") return true;
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
