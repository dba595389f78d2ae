// Reaching a machine target as its user asked: their key (never one the harness makes or
// installs), a host key they pinned in known_hosts (never trusted on first use), and nothing run
// there before the marker file is seen, because the scenarios kexec the machine.
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import ssh2 from "ssh2";
import { HarnessError } from "../errors.js";
import { scaled } from "../util/deadline.js";
import { connectSsh, SshFailure, type SshLink, type SshLogin, type SshTarget } from "../vm/ssh.js";
import { knownHostKeys, knownHostsName } from "./known-hosts.js";
import type { TargetAddress } from "./url.js";

/** The file a machine must have before the harness touches it (README, "Real machines"). */
export const TARGET_MARKER = "/etc/kho-harness-target";

export interface TargetLoginOptions {
  readonly address: TargetAddress;
  /** The private key to log in with; default the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa. */
  readonly identity?: string;
  /** Where the target's host key is pinned; default ~/.ssh/known_hosts. */
  readonly knownHosts?: string;
  /** How long to keep trying to reach the machine (before the timeout factor). */
  readonly deadlineMs?: number;
}

const DEFAULT_IDENTITIES = ["id_ed25519", "id_ecdsa", "id_rsa"];

/** The private key text to log in with, or one sentence on why there is none to use. */
export async function loadIdentity(given: string | undefined): Promise<{ path: string; key: string }> {
  const candidates = given ? [given] : DEFAULT_IDENTITIES.map((n) => join(homedir(), ".ssh", n));
  for (const path of candidates) {
    const key = await readFile(path, "utf8").catch(() => undefined);
    if (key === undefined) continue;
    const parsed = ssh2.utils.parseKey(key);
    if (parsed instanceof Error) {
      const encrypted = /passphrase|encrypted/i.test(parsed.message);
      throw new HarnessError(
        encrypted
          ? `the SSH key ${path} is protected by a passphrase: give the harness a key without one (--identity) for the lab machines`
          : `${path} is not an SSH private key the harness can use: ${parsed.message}`,
        [],
        2,
      );
    }
    return { path, key };
  }
  throw new HarnessError(
    given
      ? `cannot read the SSH key ${given} (--identity)`
      : `no SSH key to log in with: none of ~/.ssh/${DEFAULT_IDENTITIES.join(", ")} exists; name one with --identity`,
    [],
    2,
  );
}

/** The host keys pinned for the target, or one sentence on how to pin one. */
export async function pinnedHostKeys(address: TargetAddress, knownHosts?: string): Promise<string[]> {
  const file = knownHosts ?? join(homedir(), ".ssh", "known_hosts");
  const text = await readFile(file, "utf8").catch(() => "");
  const found = knownHostKeys(text, address.host, address.port);
  const name = knownHostsName(address.host, address.port);
  if (found.keys.length > 0) return [...found.keys];
  const scan = `ssh-keyscan${address.port === 22 ? "" : ` -p ${address.port}`} ${address.host}`;
  throw new HarnessError(
    `${name} has no host key in ${file}: the harness only talks to a machine whose key you pinned; check the machine's key and add it (for example \`${scan} >> ${file}\`, then compare the fingerprint with the machine's own)`,
    found.revoked.map((k) => `revoked for ${name}: ${k}`),
    2,
  );
}

/** How to log in to the target as the user asked: their key, their pinned host keys. */
export async function targetLogin(
  opts: TargetLoginOptions,
): Promise<SshTarget & SshLogin & { readonly identityPath: string }> {
  const identity = await loadIdentity(opts.identity);
  const hostKeys = await pinnedHostKeys(opts.address, opts.knownHosts);
  return {
    host: opts.address.host,
    port: opts.address.port,
    username: opts.address.user,
    privateKey: identity.key,
    hostKey: hostKeys,
    identityPath: identity.path,
  };
}

/** Connects to the target as the user asked: their key, their pinned host key. */
export async function connectTarget(opts: TargetLoginOptions): Promise<SshLink> {
  const { identityPath, ...login } = await targetLogin(opts);
  try {
    return await connectSsh({ ...login, deadlineMs: scaled(opts.deadlineMs ?? 30_000) });
  } catch (err) {
    // Another host key or a refused key is the setup's to fix, as a missing pin is: exit 2.
    if (err instanceof SshFailure && (err.kind === "host-key" || err.kind === "auth"))
      throw new HarnessError(
        err.kind === "auth" ? `${err.message} (--identity ${identityPath})` : err.message,
        err.evidence,
        2,
      );
    throw err;
  }
}

/** Refuses, before anything else runs there, a machine without the marker file. */
export async function assertMarker(link: SshLink, target: string): Promise<void> {
  const r = await link.exec(`test -e ${TARGET_MARKER}`, { deadlineMs: scaled(30_000) });
  if (r.code === 0) return;
  throw new HarnessError(
    `${target} has no ${TARGET_MARKER}: the harness kexecs the machines it tests, so it touches only a machine that carries this marker (create the file there to allow it)`,
    [`test -e ${TARGET_MARKER}: exit ${r.code ?? r.signal}`],
    2,
  );
}
