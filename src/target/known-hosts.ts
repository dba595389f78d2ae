// The host keys OpenSSH's known_hosts pins for a machine (sshd(8), "SSH_KNOWN_HOSTS FILE
// FORMAT"): plain and hashed (`|1|salt|hmac`) host fields, `[host]:port` for other ports than
// 22, comma-separated patterns with `*`, `?` and negation `!`, and the `@revoked` marker.
// `@cert-authority` lines pin a CA, not a host key: skipped (the harness does not check
// certificates). The harness never trusts a key on first use: a target is reached only with
// a key this file (or --known-hosts) already holds.
import { createHmac } from "node:crypto";

export interface KnownHostKeys {
  /** "ssh-ed25519 AAAA..." lines (type and base64 blob) pinned for the host, file order. */
  readonly keys: readonly string[];
  /** Keys the file marks @revoked for the host: never accepted. */
  readonly revoked: readonly string[];
}

/** The name known_hosts stores for host:port: the bare host for 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Glob of ssh's match_pattern: `*` any run, `?` one character, case-insensitive for hosts. */
function globMatches(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replaceAll("*", ".*")
      .replaceAll("?", ".")}$`,
    "i",
  );
  return re.test(name);
}

function hashedMatches(field: string, name: string): boolean {
  const m = /^\|1\|([A-Za-z0-9+/=]+)\|([A-Za-z0-9+/=]+)$/.exec(field);
  if (!m?.[1] || !m[2]) return false;
  const mac = createHmac("sha1", Buffer.from(m[1], "base64")).update(name).digest();
  return mac.equals(Buffer.from(m[2], "base64"));
}

/**
 * Whether a host field matches: a hashed field against the exact name; otherwise the
 * comma-separated patterns, where a matching negated pattern wins over every positive one.
 */
function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith("|")) return hashedMatches(field, name);
  let positive = false;
  for (const p of field.split(",")) {
    if (p.startsWith("!")) {
      if (globMatches(p.slice(1), name)) return false;
    } else if (globMatches(p, name)) positive = true;
  }
  return positive;
}

/** The keys `text` (a known_hosts file) pins for host:port. */
export function knownHostKeys(text: string, host: string, port: number): KnownHostKeys {
  const name = knownHostsName(host, port);
  const keys: string[] = [];
  const revoked: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const marker = fields[0]?.startsWith("@") ? fields.shift() : undefined;
    const [hosts, type, blob] = fields;
    // @cert-authority (and any marker ssh may add) pins no host key
    if (!hosts || !type || !blob || (marker !== undefined && marker !== "@revoked")) continue;
    if (!hostFieldMatches(hosts, name)) continue;
    (marker === "@revoked" ? revoked : keys).push(`${type} ${blob}`);
  }
  return { keys: keys.filter((k) => !revoked.includes(k)), revoked };
}
