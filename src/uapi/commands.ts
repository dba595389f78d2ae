// fast-check's model-based testing of /dev/liveupdate: the commands it generates and shrinks.
// A command is an abstract choice ("a preserve, on some outgoing session, of some memfd, with
// token 2"); it is resolved against the model when it runs, so that any subsequence fast-check
// tries while shrinking is still a valid sequence. Running records the op and what the model
// expects; the guest runs the whole sequence afterwards in one batch (fuzz.ts).
import fc from "fast-check";
import type { LuoModel } from "./model.js";
import type { Step } from "./compare.js";
import { MAX_CHILDREN, MAX_SLOTS, type IoctlDir, type Op, type SizeKind } from "./ops.js";

export interface ModelBox {
  readonly m: LuoModel;
  /** Kexecs a sequence may hold. */
  readonly maxKexecs: number;
}
export interface Recorder {
  readonly steps: Step[];
}

/** Session names: short ones that collide, the longest valid (63), one too long (64), empty. */
export const NAME_POOL: readonly string[] = ["a", "b", `uapi-${"x".repeat(58)}`, "y".repeat(64), ""];
/** Names a handover can hold (the reset drains these). */
export const VALID_NAMES: readonly string[] = NAME_POOL.filter((n) => n.length > 0 && n.length < 64);
const TOKENS = ["1", "2", "3", "18446744073709551615"] as const;
const MEMFD_BYTES = [0, 4096, 12345, 2 * 1024 * 1024 + 4096] as const;
const SIZES: readonly SizeKind[] = [
  "exact",
  "exact",
  "exact",
  "exact",
  "exact",
  "exact",
  "short",
  "long0",
  "longx",
];
/** Ioctls no op names: numbers outside both tables, and table numbers with direction bits. */
const RAW: readonly { nr: number; dir: IoctlDir }[] = [
  { nr: 0x02, dir: "none" },
  { nr: 0x3f, dir: "none" },
  { nr: 0x44, dir: "none" },
  { nr: 0xff, dir: "none" },
  { nr: 0x00, dir: "w" },
  { nr: 0x01, dir: "r" },
  { nr: 0x40, dir: "w" },
  { nr: 0x42, dir: "r" },
];

const pick = <T>(xs: readonly T[], k: number): T | undefined => (xs.length ? xs[k % xs.length] : undefined);

/**
 * Which slot an ioctl aims at: mostly one of the right kind, sometimes any open slot, sometimes
 * a closed one (EBADF). Undefined when there is none: the command does not run.
 */
function aimAt(
  m: LuoModel,
  aim: number,
  k: number,
  kind: Parameters<LuoModel["slotsOf"]>[0],
): number | undefined {
  if (aim === 0) return pick(m.slotsOf(), k);
  if (aim === 1) return pick(m.closedSlots(), k);
  return pick(m.slotsOf(kind), k);
}

class OpCommand implements fc.Command<ModelBox, Recorder> {
  private last = "";
  constructor(
    private readonly label: string,
    private readonly build: (m: LuoModel, box: ModelBox) => Op | undefined,
  ) {}
  check(box: Readonly<ModelBox>): boolean {
    // build() may take a slot number: probe with a view that hands out none
    return box.m.slotsNumbered < MAX_SLOTS - 1 && this.build(probe(box.m), box) !== undefined;
  }
  run(box: ModelBox, rec: Recorder): void {
    const op = this.build(box.m, box);
    if (!op) throw new Error(`${this.label} did not resolve after its check`);
    rec.steps.push({ op, expect: box.m.apply(op, rec.steps.length) });
    this.last = opLineShort(op);
  }
  toString(): string {
    return this.last || this.label;
  }
}

/** A view of the model whose newSlot/newChild do not advance it (check() must not change it). */
function probe(m: LuoModel): LuoModel {
  return new Proxy(m, {
    get(target, prop, receiver) {
      if (prop === "newSlot") return () => -1;
      if (prop === "newChild") return () => target.childCount;
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function opLineShort(op: Op): string {
  return JSON.stringify(op);
}

/**
 * Several ops as one command, each resolved against the model as the one before left it: the
 * way to the states worth exploring (a session holding memfds) in one step, which shrinking
 * can still remove whole.
 */
class StepsCommand implements fc.Command<ModelBox, Recorder> {
  private last = "";
  constructor(
    private readonly label: string,
    private readonly steps: readonly ((m: LuoModel, slots: number[]) => Op | undefined)[],
  ) {}
  check(box: Readonly<ModelBox>): boolean {
    return box.m.slotsNumbered + this.steps.length < MAX_SLOTS;
  }
  run(box: ModelBox, rec: Recorder): void {
    const done: string[] = [];
    const slots: number[] = []; // what the steps of this run made, by their own numbering
    for (const build of this.steps) {
      const op = build(box.m, slots);
      if (!op) continue;
      rec.steps.push({ op, expect: box.m.apply(op, rec.steps.length) });
      done.push(opLineShort(op));
    }
    this.last = `${this.label}[${done.join(",")}]`;
  }
  toString(): string {
    return this.last || this.label;
  }
}

const nat = fc.nat({ max: 1000 });
const aim = fc.integer({ min: 0, max: 9 });
const size = fc.constantFrom(...SIZES);
const nameIx = fc.nat({ max: NAME_POOL.length - 1 });
const token = fc.constantFrom(...TOKENS);
const reserved = fc.constantFrom(0, 0, 0, 0, 1, 0xffffffff);

/**
 * The commands; kexec only where the box allows one more. `sessionWeight` repeats the
 * session-with-memfds command: the kexec phase wants sessions that hold files at the kexec.
 */
export function luoCommands(sessionWeight = 1): fc.Arbitrary<fc.Command<ModelBox, Recorder>>[] {
  const cmd = (label: string, build: (m: LuoModel, box: ModelBox) => Op | undefined) =>
    new OpCommand(label, build);
  // a session with files preserved in it (memfds or O_TMPFILEs): on the device slot open now,
  // or one opened for it
  const sessionWithFiles = fc
    .tuple(
      fc.nat({ max: VALID_NAMES.length - 1 }),
      fc.integer({ min: 0, max: 3 }),
      nat,
      fc.constantFrom(...MEMFD_BYTES),
      fc.constantFrom("memfd" as const, "memfd" as const, "tmpfile" as const),
    )
    .map(([n, count, seed, bytes, kind]) => {
      // slots[0] is the session, slots[1 + i] memfd i
      const device = (m: LuoModel) => m.slotsOf("device")[0];
      return new StepsCommand("session-with-memfds", [
        (m) => (device(m) === undefined ? { op: "open", slot: m.newSlot() } : undefined),
        (m, slots) => {
          const dev = device(m);
          slots[0] = m.newSlot();
          return dev === undefined
            ? undefined
            : { op: "create", dev, slot: slots[0], name: VALID_NAMES[n] ?? "a", size: "exact" };
        },
        ...Array.from({ length: count }, (_, i) => [
          (m: LuoModel, slots: number[]): Op => {
            slots[1 + i] = m.newSlot();
            return { op: kind, slot: slots[1 + i] ?? 0, bytes, seed: seed + i };
          },
          (m: LuoModel, slots: number[]): Op | undefined => {
            const [session, memfd] = [slots[0] ?? -1, slots[1 + i] ?? -1];
            return m.slotsOf("outgoing").includes(session)
              ? { op: "preserve", session, fd: memfd, token: TOKENS[i] ?? "1", size: "exact" }
              : undefined;
          },
        ]).flat(),
      ]);
    });
  return [
    ...Array.from({ length: sessionWeight }, () => sessionWithFiles),
    fc.constant(cmd("open", (m) => ({ op: "open", slot: m.newSlot() }))),
    fc.constant(cmd("open", (m) => ({ op: "open", slot: m.newSlot() }))),
    nat.map((k) =>
      cmd("close", (m) => {
        const slot = pick(m.slotsOf(), k);
        return slot === undefined ? undefined : { op: "close", slot };
      }),
    ),
    ...(["create", "create", "retrieve"] as const).map((which) =>
      fc.tuple(aim, nat, nameIx, size).map(([a, k, n, s]) =>
        cmd(which, (m) => {
          const dev = aimAt(m, a, k, "device");
          const name = NAME_POOL[n] ?? "";
          return dev === undefined ? undefined : { op: which, dev, slot: m.newSlot(), name, size: s };
        }),
      ),
    ),
    fc
      .tuple(nat, fc.constantFrom(...MEMFD_BYTES))
      .map(([seed, bytes]) => cmd("memfd", (m) => ({ op: "memfd", slot: m.newSlot(), bytes, seed }))),
    fc
      .tuple(nat, fc.constantFrom(...MEMFD_BYTES))
      .map(([seed, bytes]) => cmd("tmpfile", (m) => ({ op: "tmpfile", slot: m.newSlot(), bytes, seed }))),
    fc
      .constantFrom("pipe" as const, "devnull" as const, "shmfile" as const)
      .map((kind) => cmd(kind, (m) => ({ op: kind, slot: m.newSlot() }))),
    ...[0, 1].map(() =>
      fc.tuple(aim, nat, fc.integer({ min: 0, max: 9 }), nat, token, size).map(([a, k, fdAim, fk, t, s]) =>
        cmd("preserve", (m) => {
          const session = aimAt(m, a, k, "outgoing");
          if (session === undefined) return undefined;
          const fd = fdAim === 0 ? "bad" : fdAim === 1 ? pick(m.slotsOf(), fk) : pick(m.slotsOf("memfd"), fk);
          return fd === undefined ? undefined : { op: "preserve", session, fd, token: t, size: s };
        }),
      ),
    ),
    fc.tuple(aim, nat, fc.boolean(), nat, token, size).map(([a, k, known, tk, t, s]) =>
      cmd("retrieve_fd", (m) => {
        const session = aimAt(m, a, k, "incoming");
        if (session === undefined) return undefined;
        const tok = known ? (pick(m.tokensOf(session), tk) ?? t) : t;
        return { op: "retrieve_fd", session, slot: m.newSlot(), token: tok, size: s };
      }),
    ),
    ...(["finish", "get_name"] as const).map((which) =>
      fc.tuple(aim, nat, reserved, size).map(([a, k, r, s]) =>
        cmd(which, (m) => {
          const session = aimAt(m, a, k, which === "finish" ? "incoming" : "session");
          return session === undefined ? undefined : { op: which, session, reserved: r, size: s };
        }),
      ),
    ),
    fc.tuple(nat, fc.constantFrom(...RAW)).map(([k, { nr, dir }]) =>
      cmd("raw", (m) => {
        const slot = pick(m.slotsOf(), k);
        return slot === undefined ? undefined : { op: "raw", slot, nr, dir };
      }),
    ),
    nat.map((k) =>
      cmd("grow", (m) => {
        const slot = pick(m.slotsOf("memfd"), k);
        return slot === undefined ? undefined : { op: "grow", slot };
      }),
    ),
    fc.constant(
      cmd("fork", (m) => (m.childCount < MAX_CHILDREN ? { op: "fork", child: m.newChild() } : undefined)),
    ),
    fc.tuple(fc.boolean(), nat).map(([live, k]) =>
      cmd("kill", (m) => {
        const child = live
          ? pick(m.liveChildren(), k)
          : m.childCount < MAX_CHILDREN
            ? m.childCount
            : undefined;
        return child === undefined ? undefined : { op: "kill", child };
      }),
    ),
    fc.constant(cmd("kexec", (m, box) => (m.kexecs < box.maxKexecs ? { op: "kexec" } : undefined))),
  ];
}

/**
 * What is checked after a kexec whatever the sequence did: every session that was handed over
 * is retrieved, every token's file read back and compared, and the session finished.
 */
export function recordEpilogue(m: LuoModel, rec: Recorder): void {
  const record = (op: Op) => rec.steps.push({ op, expect: m.apply(op, rec.steps.length) });
  record({ op: "reset" });
  const dev = m.newSlot();
  record({ op: "open", slot: dev });
  for (const name of m.incomingNames()) {
    const session = m.newSlot();
    record({ op: "retrieve", dev, slot: session, name, size: "exact" });
    for (const t of m.tokensOf(session))
      record({ op: "retrieve_fd", session, slot: m.newSlot(), token: t, size: "exact" });
    record({ op: "finish", session, reserved: 0, size: "exact" });
    record({ op: "close", slot: session });
  }
  record({ op: "close", slot: dev });
}
