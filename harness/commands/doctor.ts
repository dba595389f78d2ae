import type { Command } from "commander";
import { HOST_TOOLS, probeTools } from "../../src/host/tools.js";
import { ensureHostTools, installCommands, planInstall, runInstall } from "../../src/host/install.js";
import { probeAndRememberKvm } from "../../src/host/kvm.js";
import { stderrLogger } from "../../src/util/log.js";
import { action } from "../cli-support.js";

export function registerDoctor(program: Command): void {
  program
    .command("setup")
    .description(
      "what 'kho run' and 'kho test' do first: install missing host tools as root, or name them (exit 2)",
    )
    .option("--for <what>", "the command this is for, in messages", "kho setup")
    .action(
      action(async (opts: { for: string }) => {
        await ensureHostTools(stderrLogger, opts.for);
      }),
    );

  program
    .command("doctor")
    .description("check (and with --install, install) every host tool; probe whether KVM really works")
    .option("--install", "install what is missing with apt (needs root)")
    .option("--json", "machine-readable output")
    .action(
      action(async (opts: { install?: boolean; json?: boolean }) => {
        let status = await probeTools(HOST_TOOLS);
        let missing = status.filter((s) => s.version === undefined && !s.tool.optional).map((s) => s.tool);
        if (opts.install && missing.length > 0) {
          await runInstall(await planInstall(missing), stderrLogger);
          status = await probeTools(HOST_TOOLS);
          missing = status.filter((s) => s.version === undefined && !s.tool.optional).map((s) => s.tool);
        }
        const kvm = await probeAndRememberKvm(stderrLogger);
        if (opts.json) {
          const tools = status.map((s) => ({
            id: s.tool.id,
            package: s.tool.pkg,
            purpose: s.tool.purpose,
            version: s.version ?? null,
          }));
          process.stdout.write(JSON.stringify({ tools, kvm }, null, 2) + "\n");
        } else {
          for (const s of status) {
            const state = s.version ?? (s.tool.optional ? "missing (optional)" : "MISSING");
            process.stdout.write(`${s.tool.id.padEnd(32)} ${s.tool.purpose.padEnd(13)} ${state}\n`);
          }
          for (const [arch, v] of Object.entries(kvm)) {
            process.stdout.write(
              `${`kvm (${arch})`.padEnd(32)} ${"boot".padEnd(13)} ${v?.usable ? "usable" : `unusable: ${v?.reason ?? "?"} (TCG will be used)`}\n`,
            );
          }
          if (missing.length > 0) {
            process.stdout.write(
              `\nmissing: ${missing.map((t) => t.id).join(", ")}\nto install, run 'kho doctor --install' as root, or:\n`,
            );
            for (const c of installCommands(await planInstall(missing))) process.stdout.write(`  ${c}\n`);
          }
        }
        return missing.length > 0 ? 1 : 0;
      }),
    );
}
