// What /dev/liveupdate answers, predicted from the kernel's source (7.2: kernel/liveupdate/
// luo_core.c, luo_session.c, luo_file.c, kho_block.c; mm/memfd_luo.c). One LuoModel is one
// process of the agent plus the kernel's LUO state, across kexecs. `apply` predicts an op's
// answer and moves the state on; the comparison with the guest's answers is in compare.ts.
// The rules, in the kernel's order, with the lines that decide them:
//  - /dev/liveupdate opens once at a time: EBUSY (luo_open, in_use until the file's release).
//  - an ioctl on a closed fd: EBADF; on a file that is not LUO's: ENOTTY.
//  - device ioctls (luo_ioctl): nr outside 0..1 EINVAL; a cmd with other bits ENOTTY; size under
//    the struct EINVAL; non-zero bytes past it E2BIG (copy_struct_from_user).
//  - session ioctls (luo_session_ioctl): nr outside 0x40..0x43 EINVAL; other bits ENOTTY; the
//    wrong kind of session EINVAL (checked before the size); then the size checks.
//  - CREATE: a name of 0 or 64 bytes EINVAL; a name an outgoing session has EEXIST.
//  - RETRIEVE_SESSION: not handed over (or already closed) ENOENT; open already EINVAL.
//  - PRESERVE_FD: token used in the session EEXIST (before the fd is looked at); fd -1 EBADF;
//    not a shmem file with no links ENOENT (a memfd or an O_TMPFILE is one, a linked file is not); a file preserved in any session, or retrieved and
//    not finished, EBUSY. A preserved memfd is frozen: growing it is EPERM.
//  - RETRIEVE_FD: no such token (or after FINISH) ENOENT; again: the same file.
//  - FINISH and GET_NAME: reserved not 0 EINVAL. FINISH drops every file (retrieved memfds stay
//    the process's own).
//  - the last close of an outgoing session unpreserves its files and frees its name; of a
//    retrieved one finishes it and removes it from the incoming sessions.
//  - kexec: every outgoing session still open comes back, with its files' contents at the time
//    they were preserved; nothing else survives.
import type { IoctlDir, Op, SizeKind } from "./ops.js";

/** What an op must answer. `contentOf` is the step whose described file this one's contents
 *  (hash and size) must equal; `sameInodeAs` the step that returned this very file before. */
export type Expect =
  | { readonly ok: false; readonly errname: string }
  | {
      readonly ok: true;
      readonly contentOf?: number;
      readonly sameInodeAs?: number;
      readonly name?: string;
    };

export type ObjKind = "device" | "session" | "memfd" | "pipe" | "devnull" | "shmfile";

interface Obj {
  readonly kind: ObjKind;
}
interface Memfd extends Obj {
  readonly kind: "memfd";
  readonly inode: number;
  /** The step whose described contents it has now. */
  content: number;
  frozen: boolean;
  /** For a retrieved memfd: the step that first returned it. */
  readonly retrievedAt?: number;
}
interface PreservedFile {
  readonly content: number;
  /** Outgoing: the preserved memfd. */
  readonly memfd?: Memfd;
  /** Incoming: the file RETRIEVE_FD made. */
  retrieved?: Memfd;
}
interface Incoming {
  readonly name: string;
  readonly files: Map<string, PreservedFile>;
  /** Its session file while retrieved and not yet released. */
  open?: Session;
}
interface Session extends Obj {
  readonly kind: "session";
  readonly name: string;
  /** Outgoing: its files by token. Incoming: undefined (the files are the record's). */
  readonly files?: Map<string, PreservedFile>;
  readonly incoming?: Incoming;
}
type AnyObj = Obj | Memfd | Session;

const MAX_NAME = 64;
const DEVICE_NRS = 2; // CREATE_SESSION, RETRIEVE_SESSION
const SESSION_NR_FIRST = 0x40;
const SESSION_NR_LAST = 0x43;
const NR = { create: 0x00, retrieve: 0x01, preserve: 0x40, retrieve_fd: 0x41, finish: 0x42, get_name: 0x43 };

const err = (errname: string): Expect => ({ ok: false, errname });
const OK: Expect = { ok: true };

/** A deliberate error in the model, for proving that a mismatch is found and shrunk. */
export type Plant = "empty-name-enoent";
export const PLANTS: readonly Plant[] = ["empty-name-enoent"];

export class LuoModel {
  private readonly slots = new Map<number, AnyObj>();
  private readonly children = new Map<number, Set<AnyObj>>();
  private readonly outgoing = new Set<Session>();
  private incoming = new Map<string, Incoming>();
  private readonly busy = new Set<number>();
  private deviceInUse = false;
  private nextInode = 1;
  private nextSlotId = 0;
  private nextChildId = 0;
  kexecs = 0;

  constructor(private readonly plant?: Plant) {}

  // ---- what the command generators ask ----

  /** A slot number no fd has used in this process. */
  newSlot(): number {
    return this.nextSlotId++;
  }
  newChild(): number {
    return this.nextChildId++;
  }
  /** Slot numbers handed out so far. */
  get slotsNumbered(): number {
    return this.nextSlotId;
  }
  get childCount(): number {
    return this.nextChildId;
  }
  /** The open slots holding a file of `kind` (all open slots without one), in slot order. */
  slotsOf(kind?: ObjKind | "outgoing" | "incoming"): number[] {
    return [...this.slots.entries()]
      .filter(([, o]) => {
        if (kind === undefined) return true;
        if (kind === "outgoing" || kind === "incoming")
          return o.kind === "session" && ((o as Session).incoming !== undefined) === (kind === "incoming");
        return o.kind === kind;
      })
      .map(([s]) => s)
      .sort((a, b) => a - b);
  }
  /** Slots numbered but closed now (an ioctl on them gets fd -1). */
  closedSlots(): number[] {
    const out: number[] = [];
    for (let s = 0; s < this.nextSlotId; s++) if (!this.slots.has(s)) out.push(s);
    return out;
  }
  liveChildren(): number[] {
    return [...this.children.keys()].sort((a, b) => a - b);
  }
  /** Tokens of the session in `slot` (outgoing: preserved; incoming: handed over). */
  tokensOf(slot: number): string[] {
    const o = this.slots.get(slot);
    if (o?.kind !== "session") return [];
    const s = o as Session;
    return [...(s.files ?? s.incoming?.files ?? new Map<string, PreservedFile>()).keys()];
  }
  /** Names of the sessions handed over and not yet released. */
  incomingNames(): string[] {
    return [...this.incoming.keys()];
  }

  // ---- the prediction ----

  apply(op: Op, step: number): Expect {
    const e = this.predict(op, step);
    if (this.plant === "empty-name-enoent" && op.op === "create" && op.name === "" && !e.ok)
      return err("ENOENT");
    return e;
  }

  private predict(op: Op, step: number): Expect {
    switch (op.op) {
      case "open":
        if (this.deviceInUse) return err("EBUSY");
        this.deviceInUse = true;
        this.put(op.slot, { kind: "device" });
        return OK;
      case "close": {
        const o = this.slots.get(op.slot);
        if (!o) return err("EBADF");
        this.slots.delete(op.slot);
        this.releaseIfUnheld([o]);
        return OK;
      }
      case "memfd":
      case "tmpfile": // memfd_luo_can_preserve(): shmem with no link, whichever call made it
        this.put(op.slot, this.memfd(step));
        return OK;
      case "pipe":
      case "devnull":
      case "shmfile":
        this.put(op.slot, { kind: op.op });
        return OK;
      case "grow": {
        const o = this.slots.get(op.slot);
        if (!o) return err("EBADF");
        if (o.kind !== "memfd") return err("EINVAL");
        const m = o as Memfd;
        if (m.frozen) return err("EPERM");
        m.content = step;
        return OK;
      }
      case "fork":
        this.children.set(op.child, new Set(this.slots.values()));
        return OK;
      case "kill": {
        const held = this.children.get(op.child);
        if (!held) return err("ESRCH");
        this.children.delete(op.child);
        this.releaseIfUnheld([...held]);
        return OK;
      }
      case "reset": {
        const all = [...this.slots.values(), ...[...this.children.values()].flatMap((c) => [...c])];
        this.slots.clear();
        this.children.clear();
        this.releaseIfUnheld(all);
        return OK;
      }
      case "kexec":
        return this.kexec();
      case "raw":
        return this.dispatch(op.slot, op.nr, op.dir) ?? err("EINVAL");
      case "create":
      case "retrieve":
        return this.deviceOp(op.op, op.dev, op.slot, op.name, op.size);
      case "preserve":
      case "retrieve_fd":
      case "finish":
      case "get_name":
        return this.sessionOp(op, step);
    }
  }

  private put(slot: number, o: AnyObj): void {
    const old = this.slots.get(slot);
    this.slots.set(slot, o);
    if (old) this.releaseIfUnheld([old]);
  }

  private memfd(step: number, retrievedAt?: number): Memfd {
    return {
      kind: "memfd",
      inode: this.nextInode++,
      content: step,
      frozen: false,
      ...(retrievedAt === undefined ? {} : { retrievedAt }),
    };
  }

  private held(o: AnyObj): boolean {
    for (const v of this.slots.values()) if (v === o) return true;
    for (const c of this.children.values()) if (c.has(o)) return true;
    return false;
  }

  private releaseIfUnheld(objs: readonly AnyObj[]): void {
    for (const o of new Set(objs)) {
      if (this.held(o)) continue;
      if (o.kind === "device") this.deviceInUse = false;
      if (o.kind !== "session") continue;
      const s = o as Session;
      if (s.incoming) {
        if (s.incoming.open !== s) continue;
        this.finish(s.incoming);
        this.incoming.delete(s.incoming.name);
      } else if (this.outgoing.delete(s)) {
        for (const f of s.files?.values() ?? []) {
          if (!f.memfd) continue;
          f.memfd.frozen = false;
          this.busy.delete(f.memfd.inode);
        }
      }
    }
  }

  private finish(rec: Incoming): void {
    for (const f of rec.files.values()) if (f.retrieved) this.busy.delete(f.retrieved.inode);
    rec.files.clear();
  }

  /** The kernel's dispatch up to the op's own checks: an errno, or undefined to go on. */
  private dispatch(slot: number, nr: number, dir: IoctlDir): Expect | undefined {
    const o = this.slots.get(slot);
    if (!o) return err("EBADF");
    if (o.kind === "device") {
      if (nr >= DEVICE_NRS) return err("EINVAL");
      if (dir !== "none") return err("ENOTTY");
      return undefined;
    }
    if (o.kind === "session") {
      if (nr < SESSION_NR_FIRST || nr > SESSION_NR_LAST) return err("EINVAL");
      if (dir !== "none") return err("ENOTTY");
      return undefined;
    }
    return err("ENOTTY");
  }

  private static sizeCheck(size: SizeKind): Expect | undefined {
    if (size === "short") return err("EINVAL");
    if (size === "longx") return err("E2BIG");
    return undefined;
  }

  private deviceOp(
    op: "create" | "retrieve",
    dev: number,
    slot: number,
    name: string,
    size: SizeKind,
  ): Expect {
    const refused = this.dispatch(dev, NR[op], "none") ?? LuoModel.sizeCheck(size);
    if (refused) return refused;
    // the kernel compares at most 64 bytes and stops at a NUL
    const key = name.split("\0")[0] ?? "";
    if (op === "create") {
      if (key.length === 0 || key.length >= MAX_NAME) return err("EINVAL");
      if ([...this.outgoing].some((s) => s.name === key)) return err("EEXIST");
      const s: Session = { kind: "session", name: key, files: new Map() };
      this.outgoing.add(s);
      this.put(slot, s);
      return OK;
    }
    const rec = this.incoming.get(key);
    if (!rec) return err("ENOENT");
    if (rec.open) return err("EINVAL");
    const s: Session = { kind: "session", name: key, incoming: rec };
    rec.open = s;
    this.put(slot, s);
    return OK;
  }

  private sessionOp(op: Extract<Op, { session: number }>, step: number): Expect {
    const refused = this.dispatch(op.session, NR[op.op], "none");
    if (refused) return refused;
    const s = this.slots.get(op.session) as Session;
    const wantIncoming = op.op === "retrieve_fd" || op.op === "finish";
    if (op.op !== "get_name" && (s.incoming !== undefined) !== wantIncoming) return err("EINVAL");
    const sized = LuoModel.sizeCheck(op.size);
    if (sized) return sized;
    switch (op.op) {
      case "get_name":
        return op.reserved !== 0 ? err("EINVAL") : { ok: true, name: s.name };
      case "finish":
        if (op.reserved !== 0) return err("EINVAL");
        if (s.incoming) this.finish(s.incoming);
        return OK;
      case "preserve": {
        const files = s.files as Map<string, PreservedFile>;
        if (files.has(op.token)) return err("EEXIST");
        const o = op.fd === "bad" ? undefined : this.slots.get(op.fd);
        if (!o) return err("EBADF");
        if (o.kind !== "memfd") return err("ENOENT");
        const m = o as Memfd;
        if (this.busy.has(m.inode)) return err("EBUSY");
        this.busy.add(m.inode);
        m.frozen = true;
        files.set(op.token, { content: m.content, memfd: m });
        return OK;
      }
      case "retrieve_fd": {
        const f = s.incoming?.files.get(op.token);
        if (!f) return err("ENOENT");
        if (f.retrieved) {
          this.put(op.slot, f.retrieved);
          return { ok: true, contentOf: f.content, sameInodeAs: f.retrieved.retrievedAt ?? step };
        }
        f.retrieved = this.memfd(f.content, step);
        this.busy.add(f.retrieved.inode);
        this.put(op.slot, f.retrieved);
        return { ok: true, contentOf: f.content };
      }
    }
  }

  private kexec(): Expect {
    const next = new Map<string, Incoming>();
    for (const s of this.outgoing) {
      const files = new Map<string, PreservedFile>();
      for (const [token, f] of s.files ?? []) files.set(token, { content: f.content });
      next.set(s.name, { name: s.name, files });
    }
    this.slots.clear();
    this.children.clear();
    this.outgoing.clear();
    this.busy.clear();
    this.incoming = next;
    this.deviceInUse = false;
    this.kexecs++;
    return OK;
  }
}
