import type { Command } from "commander";
import { HarnessError } from "../../src/errors.js";
import { compareReports, comparisonExitCode, formatComparison } from "../../src/report/compare.js";
import { displayTime, runTime, totalsLine } from "../../src/report/format.js";
import { BAD_INPUT_EXIT, loadReport, type LoadedReport } from "../../src/report/schema.js";
import { writeHistory } from "../../src/report/history.js";
import { DEFAULT_KCIDB_ORIGIN, writeKcidb } from "../../src/report/kcidb.js";
import { mergeRunFolders } from "../../src/report/merge.js";
import { writeSummaries } from "../../src/report/summary.js";
import { formatDuration } from "../../src/util/log.js";
import { action } from "../cli-support.js";

function label(r: LoadedReport): string {
  const time = runTime(r.doc, r.dir);
  return `${r.path}${time ? ` (${displayTime(time)})` : ""}: ${totalsLine(r.doc.totals)}`;
}

export function registerReport(program: Command): void {
  const report = program
    .command("report")
    .description(
      "rebuild a run folder's summaries, compare two runs, merge shards, write KCIDB, or the history of many runs",
    );
  report
    .command("show <paths...>", { isDefault: true })
    .description(
      "rebuild summary.md and summary.html of a run folder from its report.json; with --compare OLD NEW, what changed between two runs (exit 1 on new failures)",
    )
    .option("--compare", "compare two runs (run folders or report.json files): OLD NEW")
    .option("--all", "with --compare: list every compared timing, not only the flagged ones")
    .option("--json", "with --compare: machine-readable output")
    .action(
      action(async (paths: string[], opts: { compare?: boolean; all?: boolean; json?: boolean }) => {
        if (opts.compare) {
          if (paths.length !== 2) {
            throw new HarnessError(
              `--compare takes two runs, OLD and NEW, got ${paths.length}`,
              [],
              BAD_INPUT_EXIT,
            );
          }
          const [oldReport, newReport] = await Promise.all(paths.map(loadReport));
          if (!oldReport || !newReport)
            throw new HarnessError("--compare takes two runs", [], BAD_INPUT_EXIT);
          const c = compareReports(oldReport.doc, newReport.doc);
          process.stdout.write(
            opts.json
              ? JSON.stringify({ old: oldReport.path, new: newReport.path, ...c }, null, 2) + "\n"
              : formatComparison(c, { old: label(oldReport), new: label(newReport) }, opts.all),
          );
          return comparisonExitCode(c);
        }
        if (paths.length !== 1) {
          throw new HarnessError(
            `report takes one run folder (or --compare OLD NEW), got ${paths.length}`,
            [],
            BAD_INPUT_EXIT,
          );
        }
        const loaded = await loadReport(paths[0] ?? "");
        if (loaded.upgradedFrom) {
          process.stderr.write(
            `# ${loaded.path} has schema ${loaded.upgradedFrom}: QEMU version, config hash and host facts are unknown\n`,
          );
        }
        const written = await writeSummaries(loaded.dir, loaded.doc);
        process.stdout.write(`${written.markdown}\n${written.html}\n`);
        return 0;
      }),
    );

  report
    .command("merge <dirs...>")
    .description(
      "one run folder from the run folders of a sharded run's jobs (--shard K/N): report.json, summaries, JUnit, KTAP; a unit no shard ran is reported missing",
    )
    .requiredOption("--out <dir>", "the merged run folder")
    .option("--copy", "copy the shards' artifacts into it (default: link them)")
    .action(
      action(async (dirs: string[], opts: { out: string; copy?: boolean }) => {
        const started = performance.now();
        const loaded = await Promise.all(dirs.map(loadReport));
        const merged = await mergeRunFolders(loaded, opts.out, {
          copy: opts.copy === true,
          startedFrom: process.argv.slice(1).join(" "),
        });
        const shards = merged.doc.mergedFrom ?? [];
        process.stdout.write(
          [
            `merged ${shards.length} shards into ${merged.outDir}: ${totalsLine(merged.doc.totals)}`,
            ...shards.map(
              (s) => `  shard ${s.shard} on ${s.hostname}: ${formatDuration(s.wallMs)} (${s.dir})`,
            ),
            `  wall time of the sharded run (its slowest shard): ${formatDuration(merged.doc.wallMs)}; merge took ${formatDuration(performance.now() - started)}`,
            ...(merged.missing.length
              ? [`  missing (no shard ran them, counted as notrun): ${merged.missing.join(", ")}`]
              : []),
            `  summary ${merged.html}`,
          ].join("\n") + "\n",
        );
        return merged.doc.exitCode;
      }),
    );

  report
    .command("kcidb <dir>")
    .description(
      "write the run as KernelCI KCIDB JSON (schema v5.3) into DIR/kcidb.json: checkouts, builds, tests",
    )
    .option("--origin <name>", "the KCIDB origin every id starts with ([a-z0-9_]+)", DEFAULT_KCIDB_ORIGIN)
    .option("--run-id <id>", "this run's part of the ids (default: the run folder's name)")
    .option(
      "--log-url-base <url>",
      "where the run folder is published: logs and artifacts are linked under it (default: file:// paths here)",
    )
    .action(
      action(async (dir: string, opts: { origin: string; runId?: string; logUrlBase?: string }) => {
        const path = await writeKcidb(dir, {
          origin: opts.origin,
          ...(opts.runId ? { runId: opts.runId } : {}),
          ...(opts.logUrlBase ? { logUrlBase: opts.logUrlBase } : {}),
        });
        process.stdout.write(`${path}\n`);
        return 0;
      }),
    );

  report
    .command("history <dirs...>")
    .description(
      "one page and a JSON over many runs (one per night, say): each scenario's verdicts in order, the first run of each new failure and its kernel, flake rates, phase times across runs",
    )
    .option("--out <dir>", "where history.html and history.json go", "out/history")
    .action(
      action(async (dirs: string[], opts: { out: string }) => {
        const written = await writeHistory(dirs, opts.out);
        process.stdout.write(`${written.html}\n${written.json}\n`);
        return 0;
      }),
    );
}
