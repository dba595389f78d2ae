// The config and version a kernel carries inside itself. CONFIG_IKCONFIG puts the gzipped
// .config between the markers "IKCFG_ST" and "IKCFG_ED" (kernel/configs.c, the same search
// scripts/extract-ikconfig does); the banner init/version.c prints at boot names the release.
import { DecodeError } from "../errors.js";
import { parseConfig, type ConfigMap } from "./config.js";
import { gunzipExact } from "./decompress.js";

const START = Buffer.from("IKCFG_ST\x1f\x8b\x08", "latin1");
const END = Buffer.from("IKCFG_ED", "latin1");
/** A full .config is about 300 KB; the cap only stops a hostile stream. */
const MAX_CONFIG = 16 << 20;

export interface EmbeddedConfig {
  /** Offset of the gzip stream in the searched bytes. */
  readonly offset: number;
  readonly text: string;
  /** Option names without the CONFIG_ prefix, as src/kernel/config.ts parses them. */
  readonly config: ConfigMap;
}

const asBuffer = (b: Uint8Array) =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** The embedded .config, or undefined when the kernel was built without CONFIG_IKCONFIG=y. */
export function findIkconfig(bytes: Uint8Array): EmbeddedConfig | undefined {
  const buf = asBuffer(bytes);
  const marker = buf.indexOf(START);
  if (marker < 0) return undefined;
  const offset = marker + 8;
  const end = buf.indexOf(END, offset);
  if (end < 0) throw new DecodeError("IKCONFIG", offset, 'no "IKCFG_ED" after the config (image truncated?)');
  const text = Buffer.from(gunzipExact(buf.subarray(offset, end), "IKCONFIG", offset, MAX_CONFIG)).toString(
    "utf8",
  );
  return { offset, text, config: parseConfig(text) };
}

export interface KernelBanner {
  /** The release, as `uname -r` says it: "6.1.0-18-amd64". */
  readonly release: string;
  /** The whole line, "Linux version 6.1.0-18-amd64 (debian-kernel@...) ... (2024-02-01)". */
  readonly banner: string;
}

const BANNER = Buffer.from("Linux version ", "latin1");

/** The linux_banner string: "Linux version " followed by a release that starts with a digit. */
export function findBanner(bytes: Uint8Array): KernelBanner | undefined {
  const buf = asBuffer(bytes);
  for (let at = buf.indexOf(BANNER); at >= 0; at = buf.indexOf(BANNER, at + 1)) {
    const start = at + BANNER.length;
    const next = buf[start];
    if (next === undefined || next < 0x30 || next > 0x39) continue; // "%s version %s" and friends
    let end = start;
    while (end < buf.length && end - at < 512 && (buf[end] ?? 0) >= 0x20 && (buf[end] ?? 0) < 0x7f) end++;
    const banner = buf.subarray(at, end).toString("latin1").trim();
    return { release: releaseOf(banner.slice(BANNER.length)), banner };
  }
  return undefined;
}

/** The release is the first word of the bzImage kernel_version string and of the banner. */
export function releaseOf(versionString: string): string {
  return versionString.trim().split(/\s+/)[0] ?? "";
}
