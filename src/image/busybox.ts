// The applet names inside a busybox binary, so the image can carry the applet links instead of
// the guest's init making them (`busybox --install -s`: a process start and ~280 symlink calls,
// 40-110 ms of every boot under TCG). busybox keeps its names in one NUL-separated, sorted
// string that starts with the "[" and "[[" applets (applet_tables.h, generated at its build);
// reading it needs no execution, so it works for a binary of any arch.

const NAME = /^[a-z0-9[\]._-]{1,32}$/;
const START = Buffer.from("[\0[[\0", "latin1");
/** Fewer than this many names is not the applet table (Debian's busybox has ~280). */
const MIN_APPLETS = 20;

/**
 * The applet names in table order, or undefined when the table is not found or does not look
 * like one (unsorted, too short, no `sh`): then the init makes the links itself.
 */
export function busyboxApplets(binary: Uint8Array): string[] | undefined {
  const bytes = Buffer.from(binary.buffer, binary.byteOffset, binary.byteLength);
  const at = bytes.indexOf(START);
  if (at < 0) return undefined;
  const names: string[] = [];
  for (let from = at; from < bytes.length;) {
    const end = bytes.indexOf(0, from);
    if (end <= from) break; // an empty name (two NULs) or no terminator ends the table
    const name = bytes.toString("latin1", from, end);
    if (!NAME.test(name)) break;
    names.push(name);
    from = end + 1;
  }
  const sorted = names.every((n, i) => i === 0 || (names[i - 1] ?? "") < n);
  return names.length >= MIN_APPLETS && sorted && names.includes("sh") ? names : undefined;
}
