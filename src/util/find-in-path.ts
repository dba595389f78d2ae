import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";

/** The first `name` on PATH, as `which` finds it; undefined when there is none. */
export function findInPath(name: string): string | undefined {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  return dirs.map((d) => join(d, name)).find((p) => existsSync(p));
}
