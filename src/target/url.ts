// A machine target's address: `ssh://[USER@]HOST[:PORT]`, as `kho target` and (later)
// `kho run --target` take it. Only what SSH needs; anything else is refused with the reason.
import { HarnessError } from "../errors.js";

export interface TargetAddress {
  /** Default root: the scenarios need /dev/liveupdate, debugfs and kexec. */
  readonly user: string;
  /** A host name, an IPv4 address or an IPv6 address without brackets. */
  readonly host: string;
  readonly port: number;
}

/** `root@host` for port 22, `root@[::1]:2222` otherwise: how the harness names the target. */
export function describeTarget(t: TargetAddress): string {
  const host = t.host.includes(":") ? `[${t.host}]` : t.host;
  return t.port === 22 ? `${t.user}@${host}` : `${t.user}@${host}:${t.port}`;
}

const bad = (given: string, why: string) =>
  new HarnessError(
    `${JSON.stringify(given)} is not a machine target (ssh://[USER@]HOST[:PORT]): ${why}`,
    [],
    2,
  );

/** Parses `ssh://[USER@]HOST[:PORT]`; refuses anything else with one sentence. */
export function parseTargetUrl(given: string): TargetAddress {
  if (!given.startsWith("ssh://"))
    throw bad(given, "the scheme must be ssh:// (the only way to reach a machine)");
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw bad(given, "it does not parse as a URL");
  }
  if (url.password) throw bad(given, "no password in the URL: the harness logs in with a key (--identity)");
  if ((url.pathname && url.pathname !== "/") || url.search || url.hash)
    throw bad(given, "no path, query or fragment after the host");
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!host) throw bad(given, "no host");
  const port = url.port ? Number(url.port) : 22;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw bad(given, `port ${url.port} is out of range`);
  let user: string;
  try {
    user = decodeURIComponent(url.username) || "root";
  } catch {
    throw bad(given, "the user name is not valid percent-encoding");
  }
  if (!/^[A-Za-z0-9._][A-Za-z0-9._-]*$/.test(user))
    throw bad(given, `user ${JSON.stringify(user)} is not a login name`);
  return { user, host, port };
}
