// The build's System.map, to name the functions a hung guest's vCPUs sit in. The guest's init
// prints where this boot's kernel text starts (`text=` in its ready line: KASLR moves it), so a
// program counter maps back by the difference of the two `_text` addresses.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileSha256 } from "../util/hash.js";
import { archSpec } from "../arch.js";
import type { CachedKernel } from "./cache.js";

export interface SymbolTable {
  /** `_text` as linked. */
  readonly text: bigint;
  /** `_stext` as linked (the anchor when a boot's kallsyms lists no `_text`, as on arm64). */
  readonly stext?: bigint;
  /** Text symbols, sorted by address. */
  readonly addrs: readonly bigint[];
  readonly names: readonly string[];
}

/** Text symbols (`t`, `T`, `w`, `W`) of a System.map; undefined without `_text`. */
export function parseSystemMap(map: string): SymbolTable | undefined {
  const entries: [bigint, string][] = [];
  let text: bigint | undefined;
  let stext: bigint | undefined;
  for (const line of map.split("\n")) {
    const m = /^([0-9a-f]{8,16}) ([tTwW]) (\S+)$/.exec(line);
    if (!m?.[1] || !m[3]) continue;
    const addr = BigInt(`0x${m[1]}`);
    if (m[3] === "_text") text = addr;
    if (m[3] === "_stext") stext = addr;
    entries.push([addr, m[3]]);
  }
  if (text === undefined) return undefined;
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return {
    text,
    ...(stext === undefined ? {} : { stext }),
    addrs: entries.map((e) => e[0]),
    names: entries.map((e) => e[1]),
  };
}

/** `name+0xoff` for a program counter of a boot whose `_text` was at `runtimeText`. */
export function symbolize(table: SymbolTable, runtimeText: bigint, pc: bigint): string | undefined {
  const linked = pc - runtimeText + table.text;
  let lo = 0;
  let hi = table.addrs.length - 1;
  if (hi < 0 || linked < (table.addrs[0] ?? 0n)) return undefined;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((table.addrs[mid] ?? 0n) <= linked) lo = mid;
    else hi = mid - 1;
  }
  const offset = linked - (table.addrs[lo] ?? 0n);
  // past the last text symbol by more than any function is long: not kernel text
  if (lo === table.addrs.length - 1 && offset > 0x10000n) return undefined;
  return `${table.names[lo] ?? "?"}+0x${offset.toString(16)}`;
}

/**
 * The System.map of a kernel the harness built: kept in the cache entry (builds since this was
 * added), or the build directory's when that directory still holds this very image.
 */
export async function kernelSymbols(kernel: CachedKernel): Promise<SymbolTable | undefined> {
  const inEntry = await readFile(join(kernel.dir, "System.map"), "utf8").catch(() => undefined);
  if (inEntry) return parseSystemMap(inEntry);
  const build = kernel.manifest.buildDir;
  const image = join(build, archSpec(kernel.manifest.arch).imagePath);
  const same = await fileSha256(image).then(
    (sha) => sha === kernel.manifest.imageSha256,
    () => false,
  );
  if (!same) return undefined;
  const map = await readFile(join(build, "System.map"), "utf8").catch(() => undefined);
  return map ? parseSystemMap(map) : undefined;
}
