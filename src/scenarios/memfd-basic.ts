import { MiB } from "../agent/memfd-args.js";
import { memfdScenario } from "./memfd-common.js";

/** A LUO session holding one memfd of 4 MiB of pseudo-random bytes (a fresh seed every run),
 *  carried across kexec: the host's model in its frames before (read from guest memory), the
 *  same bytes and frames after, session finished; and the host finds every frame in the
 *  preserved-memory map and the memfd in the LUO state it decodes itself. */
export const memfdBasic = memfdScenario({
  id: "memfd-basic",
  description:
    "a LUO session with a 4 MiB memfd survives kexec: the host's bytes in its frames before, the same bytes and frames after, in the decoded KHO map",
  sessions: [{ name: "kho-memfd-basic", memfds: [{ token: 1, size: 4 * MiB }] }],
  decodeMap: true,
});
