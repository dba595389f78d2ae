// Kernel configuration: the project's fragments merged over a base (Kconfig's defaults by
// default, defconfig, or a user's config) with olddefconfig, then
// every option the fragments ask for is checked, and a missing one is explained by the
// dependency that Kconfig names for it.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { execa } from "execa";
import type { ArchSpec } from "../arch.js";
import { imagesDir } from "../paths.js";

/** An option's value as .config spells it: "y", "m", "n" (is not set), or a literal. */
export type ConfigValue = string;
export type ConfigMap = Map<string, ConfigValue>;

export interface Fragment {
  readonly path: string;
  readonly text: string;
  /** Checked fragments must hold after olddefconfig; trims only make the build smaller. */
  readonly checked: boolean;
}

const LINE = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/;
const NOT_SET = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/;

/** Parses .config syntax (also fragments). Later lines win, as in Kconfig. */
export function parseConfig(text: string): ConfigMap {
  const map: ConfigMap = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const set = LINE.exec(line);
    if (set?.[1] && set[2] !== undefined) {
      map.set(set[1].slice(7), set[2].replace(/^"(.*)"$/, "$1"));
      continue;
    }
    const unset = NOT_SET.exec(line);
    if (unset?.[1]) map.set(unset[1].slice(7), "n");
  }
  return map;
}

/** The harness's fragments for an arch (common, arch, and trim: what Kconfig's defaults or
 *  defconfig build and a QEMU guest never uses), then the user's on top. */
export async function loadFragments(
  arch: ArchSpec,
  userFragments: readonly string[],
  trim: boolean,
): Promise<Fragment[]> {
  const ours: [string, boolean][] = [
    [imagesDir("config", "common.config"), true],
    [imagesDir("config", arch.configFragment), true],
    ...(trim ? [[imagesDir("config", "trim.config"), false] as [string, boolean]] : []),
  ];
  const all: [string, boolean][] = [...ours, ...userFragments.map((p): [string, boolean] => [p, true])];
  return Promise.all(
    all.map(async ([path, checked]) => {
      const text = await readFile(path, "utf8").catch(() => {
        throw new Error(`config fragment ${path} cannot be read`);
      });
      return { path, text, checked };
    }),
  );
}

/** What the checked fragments ask for, merged in order (a user's fragment may override ours). */
export function requiredOptions(fragments: readonly Fragment[]): ConfigMap {
  const merged: ConfigMap = new Map();
  for (const f of fragments) {
    for (const [k, v] of parseConfig(f.text)) {
      if (f.checked) merged.set(k, v);
      else merged.delete(k);
    }
  }
  return merged;
}

export interface MissingOption {
  readonly name: string;
  readonly wanted: ConfigValue;
  readonly actual: ConfigValue;
  /** Why Kconfig said no: the dependency lines and the values of the symbols they name. */
  readonly explanation: string;
}

export function findMissing(
  required: ConfigMap,
  actual: ConfigMap,
): { name: string; wanted: string; actual: string }[] {
  const out: { name: string; wanted: string; actual: string }[] = [];
  for (const [name, wanted] of required) {
    const have = actual.get(name) ?? "n";
    if (have !== wanted) out.push({ name, wanted, actual: have });
  }
  return out;
}

/**
 * Explains a missing option from the Kconfig source: its `depends on` lines, and the `if`
 * blocks around its definition, with the current value of every symbol they name.
 */
export async function explainMissing(tree: string, name: string, actual: ConfigMap): Promise<string> {
  const found = await execa(
    "grep",
    ["-rEn", "--include=Kconfig*", `^\\s*(menu)?config\\s+${name}\\s*$`, tree],
    { reject: false },
  );
  const first = found.stdout.split("\n").find(Boolean);
  if (!first)
    return `no Kconfig in this tree defines ${name} (wrong kernel version, or a typo in a fragment)`;
  const [file, lineNo] = first.split(":") as [string, string];
  const lines = (await readFile(file, "utf8")).split("\n");
  const defLine = Number(lineNo) - 1;
  const conditions: string[] = [];
  for (let i = defLine + 1; i < lines.length; i++) {
    const l = (lines[i] ?? "").trim();
    if (/^(config|menuconfig|choice|endchoice|menu|endmenu|if|endif|source|comment)\b/.test(l)) break;
    const dep = /^depends on\s+(.*)$/.exec(l);
    if (dep?.[1]) conditions.push(dep[1]);
  }
  // Enclosing `if SYMBOL` blocks in the same file (e.g. RUNTIME_TESTING_MENU).
  let depth = 0;
  for (let i = defLine - 1; i >= 0; i--) {
    const l = (lines[i] ?? "").trim();
    if (/^endif\b/.test(l)) depth++;
    else if (/^if\s+/.test(l)) {
      if (depth === 0) conditions.push(l.slice(3).trim());
      else depth--;
    }
  }
  const where = `${file.slice(tree.length + 1)}:${lineNo}`;
  if (conditions.length === 0)
    return `defined at ${where} with no dependencies; something selects it off or a choice excludes it`;
  const symbols = [...new Set(conditions.join(" ").match(/\b[A-Z][A-Z0-9_]+\b/g) ?? [])];
  const values = symbols.map((s) => `${s}=${actual.get(s) ?? "n"}`).join(", ");
  return `depends on ${conditions.join(" && ")} (${values}) [${where}]`;
}

export function describeFragments(fragments: readonly Fragment[]): string {
  return fragments.map((f) => basename(f.path)).join(" + ");
}
