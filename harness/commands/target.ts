import type { Command } from "commander";
import { checkTarget, formatTargetReport, targetReportToJson } from "../../src/target/check.js";
import { parseTargetUrl } from "../../src/target/url.js";
import { action } from "../cli-support.js";

interface TargetCheckOptions {
  identity?: string;
  knownHosts?: string;
  consoleCmd?: string;
  json?: boolean;
}

export function registerTarget(program: Command): void {
  const target = program
    .command("target")
    .description('a real machine reached over SSH (README, "Real machines")');
  target
    .command("check <url>")
    .description(
      "reach ssh://[USER@]HOST[:PORT] with your key and its pinned host key, refuse it without the marker file, and say whether its running kernel can run KHO scenarios",
    )
    .option(
      "--identity <file>",
      "the private key to log in with (default ~/.ssh/id_ed25519, id_ecdsa, id_rsa)",
    )
    .option("--known-hosts <file>", "where the machine's host key is pinned (default ~/.ssh/known_hosts)")
    .option(
      "--console-cmd <cmd>",
      "a shell command whose output is the machine's console (ipmitool ... sol activate, socat to a serial server): checked with a line written to its /dev/kmsg",
    )
    .option("--json", "machine-readable output")
    .action(
      action(async (url: string, opts: TargetCheckOptions) => {
        const report = await checkTarget({
          address: parseTargetUrl(url),
          ...(opts.identity ? { identity: opts.identity } : {}),
          ...(opts.knownHosts ? { knownHosts: opts.knownHosts } : {}),
          ...(opts.consoleCmd ? { consoleCmd: opts.consoleCmd } : {}),
        });
        process.stdout.write(
          opts.json
            ? JSON.stringify(targetReportToJson(report), null, 2) + "\n"
            : formatTargetReport(report) + "\n",
        );
        return report.ready ? 0 : 1;
      }),
    );
}
