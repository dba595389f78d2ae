// The CI example files (ci/) are meant to be copied: every `kho` command in them must be one
// the command line accepts, with options it knows, and their shard counts must agree.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CommanderError, type Command } from "commander";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { buildProgram } from "../../harness/program.js";

const CI = join(import.meta.dirname, "..", "..", "ci");

class Accepted extends Error {}

/** Every command below `c`, itself included. */
const allCommands = (c: Command): Command[] => [c, ...c.commands.flatMap(allCommands)];

/** Whether the CLI parses `argv` (after `kho`) up to its action, which never runs. */
async function accepts(argv: readonly string[]): Promise<true | string> {
  const program = buildProgram();
  for (const c of allCommands(program)) {
    c.exitOverride();
    c.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  }
  program.hook("preAction", () => {
    throw new Accepted();
  });
  try {
    await program.parseAsync(["node", "kho", ...argv]);
    return "parsed without reaching an action";
  } catch (e) {
    if (e instanceof Accepted) return true;
    if (e instanceof CommanderError) return e.message;
    throw e;
  }
}

/** The `kho` commands of shell lines, with CI variables given example values. */
function khoCommands(scripts: readonly string[], vars: Record<string, string>): string[][] {
  const out: string[][] = [];
  for (const script of scripts)
    for (const line of script.split("\n"))
      for (const part of line.split(/&&|\|\||;|\|/)) {
        const at = part.indexOf("./kho ");
        if (at < 0) continue;
        let cmd = part.slice(at + "./kho ".length).trim();
        for (const [name, value] of Object.entries(vars)) cmd = cmd.split(name).join(value);
        expect(cmd, `an unset variable in "${cmd}"`).not.toMatch(/\$/);
        out.push(cmd.split(/\s+/));
      }
  return out;
}

/** A file's kho commands: the CI job's four steps, each accepted by the command line. */
async function expectTheJob(cmds: readonly string[][]): Promise<void> {
  expect(cmds.map((c) => c.slice(0, 2).join(" "))).toEqual([
    "doctor --install",
    "run --shard",
    "report merge",
    "report kcidb",
  ]);
  for (const c of cmds) expect(await accepts(c), c.join(" ")).toBe(true);
}

type Yaml = Record<string, unknown>;
const record = (x: unknown): Yaml => (typeof x === "object" && x !== null ? (x as Yaml) : {});
const strings = (x: unknown): string[] =>
  typeof x === "string" ? [x] : Array.isArray(x) ? x.filter((s): s is string => typeof s === "string") : [];

async function load(name: string): Promise<Yaml> {
  return record(parse(await readFile(join(CI, name), "utf8")));
}

describe("CI example files", () => {
  it("the checker refuses what the CLI refuses", async () => {
    expect(await accepts(["run", "--shard", "1/2"])).toBe(true);
    expect(await accepts(["run", "--shards", "1/2"])).toMatch(/unknown option '--shards'/);
    expect(await accepts(["report", "merge", "a", "b"])).toMatch(/required option '--out <dir>'/);
    expect(await accepts(["frobnicate"])).toMatch(/unknown command/);
  });

  it("GitHub Actions: every kho command is accepted; the matrix has SHARDS shards", async () => {
    const wf = await load("github-actions.yml");
    const jobs = record(wf.jobs);
    const shards = Number(record(wf.env).SHARDS);
    const matrix = record(record(record(jobs.shard).strategy).matrix).shard;
    expect(matrix).toEqual(Array.from({ length: shards }, (_, i) => i + 1));
    const runs = Object.values(jobs).flatMap((job) =>
      (Array.isArray(record(job).steps) ? (record(job).steps as unknown[]) : []).flatMap((s) =>
        strings(record(s).run),
      ),
    );
    const cmds = khoCommands(runs, { "${{ matrix.shard }}": "2", "${{ env.SHARDS }}": String(shards) });
    await expectTheJob(cmds);
  });

  it("GitLab CI: every kho command is accepted; shards from parallel", async () => {
    const ci = await load("gitlab-ci.yml");
    expect(record(ci["kho-shard"]).parallel).toBeGreaterThan(1);
    const scripts = Object.values(ci).flatMap((job) => [
      ...strings(record(job).before_script),
      ...strings(record(job).script),
    ]);
    const cmds = khoCommands(scripts, { $CI_NODE_INDEX: "2", $CI_NODE_TOTAL: "4" });
    await expectTheJob(cmds);
  });
});
