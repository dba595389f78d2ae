// Issue 23: `kho run --target` against a real machine reached only over SSH. The machine is a
// guest the harness boots the normal way, with SSH keys the test gives it (in its initrd, so they
// survive its kexecs, as a lab server's authorized_keys survive its reboots). The run reaches it
// through the forwarded port, with that key as the user's and the guest's host key pinned in a
// known_hosts file, and its serial log as the console command. Its verdicts must be those of the
// normal run of the same scenarios; what a machine target cannot do must be listed, not passed.
// Then a kexec that never comes back (the test stops the guest's vCPUs at the reboot) must run
// the power-cycle command (here: the test resets the guest) and fail with that fact.
import { mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import type { Scenario } from "../../src/api/scenario.js";
import { runScenarios } from "../../src/orchestrate/runner.js";
import type { ScenarioResult } from "../../src/report/verdict.js";
import { SCENARIOS, selectScenarios } from "../../src/scenarios/index.js";
import { machineTargetSkip } from "../../src/api/scenario.js";
import type { Guest } from "../../src/session/guest.js";
import { REBOOT_MARK } from "../../src/session/kexec.js";
import { TARGET_MARKER } from "../../src/target/login.js";
import { stderrLogger } from "../../src/util/log.js";
import { generateKeys } from "../../src/vm/keys.js";
import { connectSsh } from "../../src/vm/ssh.js";
import { defaultKernel, e2eOutDir, explain, HOUR } from "./helpers.js";

const KHO = new URL("../../bin/kho", import.meta.url).pathname;

/**
 * Runnable there, one of each kind: the console, a decoded map (not possible there), a race, the
 * test module. KHO_TARGET_E2E=all runs every scenario a machine target can run instead (about 10
 * minutes more per arch; the README gives the last such run).
 */
const ALL = process.env.KHO_TARGET_E2E === "all";
const RUNNABLE = ALL
  ? SCENARIOS.filter((s) => machineTargetSkip(s, true) === undefined).map((s) => s.id)
  : ["test-kho", "memfd-basic", "race-finish-retrieve", "pages-folio-order9"];
/** Skipped there, each for its own reason. */
const SKIPPED = {
  "no-kho": /boots with KHO off/,
  "numa-pages": /needs a guest with 2 NUMA nodes/,
  "memfd-holder-died": /needs a guest the harness starts: its frames are looked for/,
};

interface Report {
  results: (ScenarioResult & { checks?: { check: string; status: string; notDone?: string }[] })[];
  arches: { accel: string; accelReason: string | null }[];
}

interface Seen {
  run?: { exitCode?: number; stderr: string; report?: Report };
  unmarked?: { exitCode?: number; stderr: string };
  lost?: { exitCode?: number; stderr: string; report?: Report; reset: boolean };
  files?: string;
}

async function reportOf(dir: string): Promise<Report | undefined> {
  return JSON.parse(await readFile(join(dir, "report.json"), "utf8").catch(() => "null")) as
    Report | undefined;
}

describe.each(ARCH_NAMES as readonly ArchName[])("kho run --target on %s", (arch) => {
  it(
    "gives the verdicts of a normal run, lists what the machine cannot do, and power-cycles a machine that does not come back",
    { timeout: HOUR },
    async () => {
      await defaultKernel(arch);
      const dir = await mkdtemp(join(tmpdir(), "kho-target-run-"));
      const keys = generateKeys("kho-target-run");
      const identity = join(dir, "id_ed25519");
      await writeFile(identity, keys.client.private, { mode: 0o600 });
      const seen: Seen = {};
      const machine: Scenario = {
        id: "target-run",
        description: "kho run --target against this guest, over its SSH port only",
        needs: [],
        boot: { kho: true },
        deadlineMs: HOUR,
        async run(ctx) {
          const vm = (ctx.guest as Guest).vm;
          // The machine's console is this guest's: what an expected failure prints there is expected.
          vm.console.allow(SCENARIOS.flatMap((s) => s.expectation?.consoleLines ?? []));
          const port = vm.sshPort;
          if (port === undefined) throw new Error("the guest has no forwarded SSH port");
          const knownHosts = join(dir, "known_hosts");
          await writeFile(knownHosts, `[127.0.0.1]:${port} ${keys.host.public}\n`);
          const url = `ssh://root@127.0.0.1:${port}`;
          const consoleCmd = `tail -n 0 -F ${join(ctx.guest.logDir, "console.log")}`;
          const kho = (out: string, ...extra: string[]) =>
            execa(
              KHO,
              [
                "run",
                "--target",
                url,
                "--identity",
                identity,
                "--known-hosts",
                knownHosts,
                "--out",
                out,
                ...extra,
              ],
              { reject: false },
            );

          const unmarkedOut = join(dir, "unmarked");
          seen.unmarked = await kho(unmarkedOut, "--scenario", "memfd-basic");
          await ctx.guest.run(`touch ${TARGET_MARKER}`);

          const runOut = join(dir, "run");
          const run = await kho(
            runOut,
            "--console-cmd",
            consoleCmd,
            "--scenario",
            [...RUNNABLE, ...Object.keys(SKIPPED)].join(","),
          );
          seen.run = { ...run, report: await reportOf(runOut) };
          // The guest runs another boot now: the test's own link to it is the old kernel's.
          const link = await connectSsh({
            host: "127.0.0.1",
            port,
            privateKey: keys.client.private,
            hostKey: keys.host.public,
            deadlineMs: 60_000,
          });
          try {
            // the private directory is gone (and the kexecs lost the marker: put it back)
            seen.files = (
              await link.exec(`ls -d /var/tmp/kho-harness.* 2>/dev/null; touch ${TARGET_MARKER}`, {
                deadlineMs: 30_000,
              })
            ).stdout.trim();
          } finally {
            await link.close();
          }

          // A kexec that never ends: the vCPUs stop at the agent's reboot mark; the power-cycle
          // command asks the test to reset the guest.
          const request = join(dir, "power-cycle-requested");
          let reset = false;
          // only the scenario's kexec: the fresh boot after its failure must go through
          let stopped = false;
          const stopAtReboot = vm.console.onLine((line) => {
            if (stopped || !REBOOT_MARK.test(line.text)) return;
            stopped = true;
            void vm.qmp.stop();
          });
          const resetter = (async () => {
            while (!(await stat(request).catch(() => undefined))) await sleep(200);
            // the guest runs with -no-reboot, which makes a reset a shutdown: a power cycle resets
            await vm.qmp.execute("set-action", { reboot: "reset" });
            await vm.qmp.systemReset();
            await vm.qmp.cont();
            reset = true;
          })();
          // The test's own session follows the guest to the boot the reset starts.
          await ctx.guest.kexec(async () => {
            const lostOut = join(dir, "lost");
            const lost = await kho(
              lostOut,
              "--scenario",
              "memfd-basic",
              "--kexec-deadline",
              "20",
              "--power-cycle-cmd",
              `touch ${request}`,
            );
            stopAtReboot();
            await Promise.race([resetter, sleep(1_000)]);
            seen.lost = { ...lost, report: await reportOf(lostOut), reset };
          }, "the machine-target runs");
        },
      };
      const { results } = await runScenarios({
        arches: [arch],
        scenarios: [machine],
        outDir: await e2eOutDir(`target-run-${arch}-`),
        log: stderrLogger,
        onResult: () => undefined,
        keys,
      });
      const [result] = results;
      expect(result?.verdict, result && explain(result)).toBe("pass");

      // Without the marker: refused before anything runs there, one sentence, exit 2.
      expect(seen.unmarked?.exitCode).toBe(2);
      expect(seen.unmarked?.stderr).toMatch(
        new RegExp(`has no ${TARGET_MARKER}: the harness kexecs the machines`),
      );
      expect(seen.unmarked?.stderr).not.toMatch(/\n\s+at /);

      // The same scenarios on QEMU guests, the normal way.
      const normal = await runScenarios({
        arches: [arch],
        scenarios: selectScenarios(RUNNABLE.join(",")),
        outDir: await e2eOutDir(`target-run-normal-${arch}-`),
        log: stderrLogger,
        onResult: () => undefined,
      });

      const report = seen.run?.report;
      expect(report, seen.run?.stderr).toBeDefined();
      expect(report?.arches[0]?.accel).toBe("machine");
      const verdictOf = (rs: readonly ScenarioResult[], id: string) => rs.find((r) => r.id === id);
      for (const id of RUNNABLE) {
        const there = verdictOf(report?.results ?? [], id);
        const here = verdictOf(normal.results, id);
        if (!ALL) expect(here?.verdict, here && explain(here)).toBe("pass");
        expect(there?.verdict, `${id} on the machine target: ${there ? explain(there) : "no result"}`).toBe(
          here?.verdict,
        );
      }
      for (const [id, why] of Object.entries(SKIPPED)) {
        const r = verdictOf(report?.results ?? [], id);
        expect(r?.verdict, id).toBe("skip");
        expect(r?.reason, id).toMatch(why);
      }
      // What it could not check there is listed as not done on this target, not passed.
      const basic = verdictOf(report?.results ?? [], "memfd-basic");
      const notOnTarget = (basic?.checks ?? [])
        .filter((c) => c.notDone === "not-on-target")
        .map((c) => c.check);
      expect(notOnTarget).toEqual(["memfd.frames-by-host", "kho.decoded-map", "luo.handover"]);
      expect(basic?.checks?.filter((c) => c.status === "passed").map((c) => c.check)).toContain(
        "memfd.contents",
      );
      expect(seen.files).toBe("");

      // The machine that did not come back: power-cycled, and the scenario fails saying so.
      expect(seen.lost?.reset).toBe(true);
      const lost = verdictOf(seen.lost?.report?.results ?? [], "memfd-basic");
      expect(lost?.verdict, seen.lost?.stderr).toBe("fail");
      expect(lost?.reason).toMatch(
        /did not come back on SSH within \d+s of the kexec; the power-cycle command ran \(exit 0, [\d.]+ s\) and root@127\.0\.0\.1:\d+ came back as a new boot/,
      );
    },
  );
});
