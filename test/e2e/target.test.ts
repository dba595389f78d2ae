// Issue 23, its first part: `kho target check` against a real machine reached only over SSH. The
// machine is a guest the harness boots the normal way; the check reaches it as a user reaches a
// lab server: through the guest's forwarded SSH port, with a key of the user's own (added to the
// guest's authorized_keys) and the guest's host key pinned in a known_hosts file, never the
// harness's own keys. Without the marker file the harness refuses the machine; with it, the
// report must say what the guest itself says (release, boot id, config, /dev/liveupdate).
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import ssh2 from "ssh2";
import { describe, expect, it } from "vitest";
import { ARCH_NAMES, type ArchName } from "../../src/arch.js";
import type { Scenario } from "../../src/api/scenario.js";
import { runScenarios } from "../../src/orchestrate/runner.js";
import type { Guest } from "../../src/session/guest.js";
import { TARGET_MARKER } from "../../src/target/login.js";
import { stderrLogger } from "../../src/util/log.js";
import { generateKeys } from "../../src/vm/keys.js";
import { defaultKernel, e2eOutDir, explain, HOUR } from "./helpers.js";

const KHO = new URL("../../bin/kho", import.meta.url).pathname;

/** The host key an SSH server presents, as `ssh-keyscan` would print it (type and base64). */
function presentedHostKey(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let key: Buffer | undefined;
    client.on("error", () => {
      if (!key) return reject(new Error("no host key presented"));
      const type = key.subarray(4, 4 + key.readUInt32BE(0)).toString();
      resolve(`${type} ${key.toString("base64")}`);
    });
    client.connect({
      host: "127.0.0.1",
      port,
      username: "root",
      readyTimeout: 60_000,
      hostVerifier: (k: Buffer) => {
        key = k;
        return false; // only the key is wanted: the handshake ends here
      },
    });
  });
}

interface Ran {
  readonly exitCode?: number;
  readonly stdout: string;
  readonly stderr: string;
}

interface Seen {
  release?: string;
  bootId?: string;
  noMarker?: Ran;
  ready?: Ran;
  otherConsole?: Ran;
  text?: Ran;
  wrongKey?: Ran;
}

describe.each(ARCH_NAMES as readonly ArchName[])("kho target check on %s", (arch) => {
  it(
    "refuses the machine without the marker, then reports its running kernel as the guest sees it",
    { timeout: HOUR },
    async () => {
      await defaultKernel(arch);
      const dir = await mkdtemp(join(tmpdir(), "kho-target-test-"));
      const user = generateKeys("kho-target-user").client; // the user's key, not the run's
      const identity = join(dir, "id_ed25519");
      await writeFile(identity, user.private, { mode: 0o600 });
      const seen: Seen = {};
      const scenario: Scenario = {
        id: "target-check",
        description: "kho target check against this guest, over its SSH port only",
        needs: [],
        boot: { kho: true },
        async run(ctx) {
          const port = (ctx.guest as Guest).vm.sshPort;
          if (port === undefined) throw new Error("the guest has no forwarded SSH port");
          await ctx.guest.run(`echo '${user.public}' >> /root/.ssh/authorized_keys`);
          const knownHosts = join(dir, "known_hosts");
          await writeFile(knownHosts, `[127.0.0.1]:${port} ${await presentedHostKey(port)}\n`);
          const url = `ssh://root@127.0.0.1:${port}`;
          const check = (...extra: string[]) =>
            execa(KHO, ["target", "check", url, "--identity", identity, ...extra], { reject: false });

          seen.noMarker = await check("--known-hosts", knownHosts, "--json");
          await ctx.guest.run(`touch ${TARGET_MARKER}`);
          // The guest's serial console as a lab's console server would give it: QEMU's log.
          const consoleLog = join(ctx.guest.logDir, "console.log");
          seen.ready = await check(
            "--known-hosts",
            knownHosts,
            "--json",
            "--console-cmd",
            `tail -n 0 -F ${consoleLog}`,
          );
          seen.text = await check("--known-hosts", knownHosts, "--console-cmd", `tail -n 0 -F ${consoleLog}`);
          seen.otherConsole = await check("--known-hosts", knownHosts, "--console-cmd", "tail -F /dev/null");

          const other = join(dir, "known_hosts.other");
          await writeFile(other, `[127.0.0.1]:${port} ${generateKeys("other").host.public}\n`);
          seen.wrongKey = await check("--known-hosts", other);

          seen.release = (await ctx.guest.run("uname -r")).trim();
          seen.bootId = (await ctx.guest.run("cat /proc/sys/kernel/random/boot_id")).trim();
        },
      };
      const { results } = await runScenarios({
        arches: [arch],
        scenarios: [scenario],
        outDir: await e2eOutDir(`target-${arch}-`),
        log: stderrLogger,
        onResult: () => undefined,
      });
      const [result] = results;
      expect(result?.verdict, result && explain(result)).toBe("pass");

      // No marker: exit 2, one sentence naming the file, nothing on stdout, no stack trace.
      expect(seen.noMarker?.exitCode).toBe(2);
      expect(seen.noMarker?.stdout).toBe("");
      expect(seen.noMarker?.stderr).toMatch(
        new RegExp(
          `^kho: root@127\\.0\\.0\\.1:\\d+ has no ${TARGET_MARKER}: the harness kexecs the machines it tests`,
        ),
      );
      expect(seen.noMarker?.stderr).not.toMatch(/\n\s+at /);

      // With the marker: ready, and every fact is the guest's own.
      expect(seen.ready?.exitCode, seen.ready?.stderr).toBe(0);
      const report = JSON.parse(seen.ready?.stdout ?? "{}") as Record<string, unknown>;
      expect(report).toMatchObject({
        arch,
        machine: arch === "arm64" ? "aarch64" : "x86_64",
        release: seen.release,
        bootId: seen.bootId,
        configSource: "/proc/config.gz",
        khoEnabled: true,
        liveupdateDevice: true,
        kcore: false, // the harness's lean kernels have no CONFIG_PROC_KCORE
        kexec: { loadDisabled: false, lockdown: "none" },
        ready: true,
        problems: [],
      });
      expect(report.cmdline).toMatch(/(^|\s)kho=on(\s|$)/);
      const config = report.config as Record<string, string>;
      expect(config.CONFIG_KEXEC_HANDOVER).toBe("y");
      expect(config.CONFIG_LIVEUPDATE).toBe("y");
      const readiness = report.readiness as { feature: string; status: string }[];
      expect(readiness.find((r) => r.feature === "KHO")?.status).toBe("ok");
      const capabilities = report.capabilities as { check: string; status: string }[];
      expect(capabilities.filter((c) => c.status === "not possible").map((c) => c.check)).toEqual([
        expect.stringMatching(/^memory read by the host/),
        expect.stringMatching(/^the pause at the kexec/),
        expect.stringMatching(/^guests of a given memory size or NUMA layout/),
      ]);

      // The same as text, as a user reads it.
      console.log(seen.text?.stdout);
      expect(seen.text?.exitCode).toBe(0);
      expect(seen.text?.stdout).toMatch(/\nverdict: root@127\.0\.0\.1:\d+ is ready for KHO scenarios$/); // execa drops the last newline
      expect(seen.text?.stdout).toMatch(/\nconsole +shows this machine's \/dev\/kmsg \(\d+ ms, 1 write\)/);

      // The console command shows this guest's console: the probe line came out of it.
      expect(report.console).toMatchObject({ seen: true });
      // A console command that shows another console: not ready, with the sentence.
      expect(seen.otherConsole?.exitCode).toBe(1);
      expect(seen.otherConsole?.stdout).toMatch(
        /verdict: not ready: the console command did not show the line the harness wrote to root@127\.0\.0\.1:\d+'s \/dev\/kmsg within 1\ds \(\d writes\)/,
      );

      // A host key other than the pinned one: refused before logging in.
      expect(seen.wrongKey?.exitCode).toBe(2);
      expect(seen.wrongKey?.stderr).toMatch(
        /^kho: the SSH server at 127\.0\.0\.1:\d+ is not the one expected: its host key differs/,
      );
    },
  );
});
