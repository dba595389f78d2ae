import { MiB, memfdScenario } from "./memfd-common.js";

/** A LUO session holding one memfd of 4 MiB of pseudo-random bytes (a fresh seed every run),
 *  carried across kexec: same bytes, same frames, session finished; and the host finds every
 *  frame in the preserved-memory map it decodes itself. */
export const memfdBasic = memfdScenario({
  id: "memfd-basic",
  description:
    "a LUO session with a 4 MiB memfd survives kexec: same SHA-256, same frames, in the decoded KHO map",
  sessions: [{ name: "kho-memfd-basic", memfds: [{ token: 1, size: 4 * MiB }] }],
  decodeMap: true,
});
