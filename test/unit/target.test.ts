// The machine target's address and pinned host keys. The known_hosts fixture was hashed by
// OpenSSH's own `ssh-keygen -H`, and what each host should get is what `ssh-keygen -F HOST -f
// test/fixtures/target/known_hosts` printed for it (OpenSSH 9.2).
import { readFileSync } from "node:fs";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { lockdownMode } from "../../src/target/check.js";
import { loadIdentity, pinnedHostKeys } from "../../src/target/login.js";
import { knownHostKeys, knownHostsName } from "../../src/target/known-hosts.js";
import { describeTarget, parseTargetUrl } from "../../src/target/url.js";
import fc from "fast-check";

const fixture = readFileSync(new URL("../fixtures/target/known_hosts", import.meta.url), "utf8");
const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgLcJgoREvTiOr0/eI+hx2oYFaJgo/jtECxEzBQ5mvD";
const ECDSA =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCh6VG09qrTJjHylPAlEAuDnHlnSMujW1CFgwVEQFYZFhYyY/k/I/MakwWQc1fgRntQ9N+EcroZnlY7XaJZXW5k=";

describe("parseTargetUrl", () => {
  it("takes user, host and port, with root and 22 as defaults", () => {
    expect(parseTargetUrl("ssh://lab-3.example.org")).toEqual({
      user: "root",
      host: "lab-3.example.org",
      port: 22,
    });
    expect(parseTargetUrl("ssh://ci@10.0.0.5:2222")).toEqual({ user: "ci", host: "10.0.0.5", port: 2222 });
    expect(parseTargetUrl("ssh://root@[fd00::5]:22")).toEqual({ user: "root", host: "fd00::5", port: 22 });
  });

  it("names the target the way ssh does", () => {
    expect(describeTarget(parseTargetUrl("ssh://h"))).toBe("root@h");
    expect(describeTarget(parseTargetUrl("ssh://u@[fd00::5]:2222"))).toBe("u@[fd00::5]:2222");
  });

  it.each([
    ["root@host", /the scheme must be ssh:\/\//],
    ["http://host", /the scheme must be ssh:\/\//],
    ["ssh://u:secret@host", /no password in the URL/],
    ["ssh://host/tmp", /no path, query or fragment/],
    ["ssh://host?x=1", /no path, query or fragment/],
    ["ssh://host:0", /port 0 is out of range/],
    ["ssh://host:99999", /does not parse as a URL/],
    ["ssh://-oProxyCommand=x@host", /is not a login name/],
  ])("refuses %s with the reason, exit 2", (given, why) => {
    let err: unknown;
    try {
      parseTargetUrl(given);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ exitCode: 2 });
    expect((err as Error).message).toMatch(why);
    expect((err as Error).message).toContain("is not a machine target (ssh://[USER@]HOST[:PORT])");
  });

  it("never throws anything but its one-sentence refusal", () => {
    const chars = fc.constantFrom(..."ssh:/@[]:.-_abc019%?#!".split(""));
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 30 }), (tail) => {
        try {
          const t = parseTargetUrl("ssh://" + tail.join(""));
          expect(t.port).toBeGreaterThanOrEqual(1);
          expect(t.host.length).toBeGreaterThan(0);
        } catch (e) {
          expect((e as Error).message).toContain("is not a machine target");
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("knownHostKeys", () => {
  it("finds a hashed [host]:port entry", () => {
    expect(knownHostsName("10.0.0.5", 2222)).toBe("[10.0.0.5]:2222");
    expect(knownHostKeys(fixture, "10.0.0.5", 2222)).toEqual({ keys: [ED25519], revoked: [] });
    // the same host on port 22 is another name
    expect(knownHostKeys(fixture, "10.0.0.5", 22).keys).toEqual([]);
  });

  it("leaves out a key the file revokes for the host, and reports it", () => {
    expect(knownHostKeys(fixture, "server1", 22)).toEqual({ keys: [ECDSA], revoked: [ED25519] });
  });

  it("never pins a key that is also revoked for the host, whatever the line order", () => {
    const text = `server1 ${ED25519}\nserver1 ${ECDSA}\n@revoked server1 ${ED25519}\n`;
    expect(knownHostKeys(text, "server1", 22)).toEqual({ keys: [ECDSA], revoked: [ED25519] });
  });

  it("matches patterns, a negation winning, and never takes a @cert-authority line as a host key", () => {
    expect(knownHostKeys(fixture, "lab-7.example.org", 22).keys).toEqual([ECDSA]);
    expect(knownHostKeys(fixture, "LAB-7.EXAMPLE.ORG", 22).keys).toEqual([ECDSA]);
    expect(knownHostKeys(fixture, "lab-bad.example.org", 22).keys).toEqual([]);
    expect(knownHostKeys(fixture, "other.example.org", 22).keys).toEqual([]);
  });

  it("treats regex characters in patterns literally", () => {
    const text = `a.b ${ED25519}\n`;
    expect(knownHostKeys(text, "a.b", 22).keys).toEqual([ED25519]);
    expect(knownHostKeys(text, "axb", 22).keys).toEqual([]);
  });
});

describe("lockdownMode", () => {
  it("reads the bracketed mode of securityfs's lockdown file", () => {
    expect(lockdownMode("[none] integrity confidentiality")).toBe("none");
    expect(lockdownMode("none [integrity] confidentiality")).toBe("integrity");
    expect(lockdownMode("absent")).toBeUndefined();
  });
});

describe("the user's key and the machine's pinned key", () => {
  const fixtures = new URL("../fixtures/target/", import.meta.url).pathname;

  it("refuses a key with a passphrase, naming it, exit 2", async () => {
    const err: unknown = await loadIdentity(`${fixtures}id_ed25519_passphrase`).catch((e: unknown) => e);
    expect(err).toMatchObject({ exitCode: 2 });
    expect((err as Error).message).toBe(
      `the SSH key ${fixtures}id_ed25519_passphrase is protected by a passphrase: give the harness a key without one (--identity) for the lab machines`,
    );
  });

  it("refuses a file that is no key, and a missing one", async () => {
    await expect(loadIdentity(`${fixtures}known_hosts`)).rejects.toThrow(
      /is not an SSH private key the harness can use/,
    );
    await expect(loadIdentity(`${fixtures}absent`)).rejects.toThrow(
      /^cannot read the SSH key .*absent \(--identity\)$/,
    );
  });

  it("refuses a machine without a pinned key, giving the ssh-keyscan line and the revoked keys", async () => {
    const err: unknown = await pinnedHostKeys(
      { user: "root", host: "server2", port: 22 },
      `${fixtures}known_hosts`,
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ exitCode: 2, evidence: [] });
    expect((err as Error).message).toContain(`\`ssh-keyscan server2 >> ${fixtures}known_hosts\``);
    const port: unknown = await pinnedHostKeys(
      { user: "root", host: "10.0.0.5", port: 2200 },
      `${fixtures}known_hosts`,
    ).catch((e: unknown) => e);
    expect((port as Error).message).toMatch(
      /^\[10\.0\.0\.5\]:2200 has no host key in .*`ssh-keyscan -p 2200 10\.0\.0\.5 >> /,
    );
    expect(
      await pinnedHostKeys({ user: "root", host: "server1", port: 22 }, `${fixtures}known_hosts`),
    ).toEqual([ECDSA]);
  });
});

describe("kho run --target on the command line", () => {
  const kho = (...args: string[]) => execa("node", ["bin/kho", "run", ...args], { reject: false });

  it("refuses the options that shape guests the harness starts, before reaching the machine", async () => {
    const r = await kho("--target", "ssh://root@127.0.0.1:1", "--jobs", "2", "--repeat", "3");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(
      "kho: --repeat, --jobs apply to guests the harness starts: a machine target (--target) runs the kernel and command line it was booted with, one scenario at a time",
    );
    expect(r.stdout).toBe("");
  });

  it("refuses an address that is not ssh:// in one sentence", async () => {
    const r = await kho("--target", "root@host", "--scenario", "memfd-basic");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^kho: "root@host" is not a machine target \(ssh:\/\/\[USER@\]HOST\[:PORT\]\)/);
  });
});
