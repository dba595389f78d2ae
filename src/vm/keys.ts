// SSH keys for a guest: a host key (so the harness can verify it talks to its own guest) and a
// client key, both ed25519 in OpenSSH format, plus the host key in dropbear's own format.
import ssh2 from "ssh2";

const { utils } = ssh2; // ssh2 is CommonJS: no named ESM exports at run time

export interface KeyPair {
  /** "-----BEGIN OPENSSH PRIVATE KEY-----..." */
  readonly private: string;
  /** "ssh-ed25519 AAAA... comment": authorized_keys / known_hosts line. */
  readonly public: string;
}

export interface SshKeys {
  readonly host: KeyPair;
  readonly client: KeyPair;
}

export function generateKeys(comment = "kho-harness"): SshKeys {
  return { host: ed25519Pair(`${comment}-host`), client: ed25519Pair(`${comment}-client`) };
}

/**
 * ssh2 1.x writes an ed25519 public key that starts with a zero byte one byte short (31), so
 * about one key in 128 cannot be parsed back ("Malformed OpenSSH private key") and a whole run
 * fails to log in. Such a key is drawn again; a valid one is returned as ssh2 wrote it.
 */
function ed25519Pair(comment: string): KeyPair {
  for (let attempt = 0; attempt < 64; attempt++) {
    const k = utils.generateKeyPairSync("ed25519", { comment });
    if (!(utils.parseKey(k.private) instanceof Error) && isWellFormed(k.private)) {
      return { private: k.private, public: k.public };
    }
  }
  throw new Error("ssh2 kept generating malformed ed25519 keys");
}

function isWellFormed(openSshPrivate: string): boolean {
  try {
    readOpenSshPrivate(openSshPrivate);
    return true;
  } catch {
    return false;
  }
}

/** The SSH wire blob of a public key line (what a server presents during key exchange). */
export function publicKeyBlob(publicLine: string): Buffer {
  const parsed = utils.parseKey(publicLine);
  if (parsed instanceof Error) throw new Error(`not an SSH public key: ${parsed.message}`);
  return parsed.getPublicSSH();
}

/**
 * Dropbear's ed25519 host key file (dropbear's signkey.c, buf_put_ed25519_priv_key):
 * string "ssh-ed25519", then string(64) = 32-byte seed || 32-byte public key. Checked against
 * `dropbearkey -y -f` from Debian's dropbear-bin 2022.83.
 */
export function dropbearHostKey(openSshPrivate: string): Buffer {
  const { type, pub, priv } = readOpenSshPrivate(openSshPrivate);
  if (type !== "ssh-ed25519") throw new Error(`dropbear conversion supports ssh-ed25519 keys, not ${type}`);
  return Buffer.concat([sshString(Buffer.from(type)), sshString(Buffer.concat([priv.subarray(0, 32), pub]))]);
}

/** openssh-key-v1 (OpenSSH's PROTOCOL.key), unencrypted only: the harness generates its keys. */
function readOpenSshPrivate(pem: string): { type: string; pub: Buffer; priv: Buffer } {
  const body = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(
    pem,
  )?.[1];
  if (!body) throw new Error("not an OpenSSH private key");
  const r = new Reader(Buffer.from(body.replace(/\s+/g, ""), "base64"));
  const magic = "openssh-key-v1\0";
  if (r.bytes(magic.length).toString("latin1") !== magic) throw new Error("bad openssh-key-v1 magic");
  if (r.string().toString() !== "none") throw new Error("encrypted OpenSSH keys are not supported");
  r.string(); // kdfname
  r.string(); // kdfoptions
  if (r.u32() !== 1) throw new Error("expected exactly one key");
  r.string(); // public key blob
  const p = new Reader(r.string());
  if (p.u32() !== p.u32()) throw new Error("OpenSSH key check words differ (encrypted or corrupt)");
  const type = p.string().toString();
  const pub = p.string();
  const priv = p.string(); // ed25519: seed || public
  if (pub.length !== 32 || priv.length !== 64) throw new Error("unexpected ed25519 key sizes");
  return { type, pub, priv };
}

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  bytes(n: number): Buffer {
    if (this.at + n > this.buf.length) throw new Error("truncated OpenSSH key");
    const out = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u32(): number {
    return this.bytes(4).readUInt32BE(0);
  }
  string(): Buffer {
    return this.bytes(this.u32());
  }
}

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}
