// `kho kernel inspect`, and the check before every boot: what a kernel image is (arch,
// format, compression, release), the config it was built with, and whether that config can
// run the KHO/LUO scenarios. Each refusal is one sentence saying what to do about it.
import { mkdir, readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { isArchName, type ArchName } from "../arch.js";
import { DecodeError, HarnessError } from "../errors.js";
import { cacheRoot } from "../paths.js";
import { writeFileAtomic } from "../util/build-slot.js";
import { fileSha256 } from "../util/hash.js";
import { parseConfig, type ConfigMap } from "./config.js";
import { decompress, type Compression } from "./decompress.js";
import { findBanner, findIkconfig, releaseOf } from "./ikconfig.js";
import { isElf, parseElfHeader, readKernelImage, type KernelArch, type KernelImage } from "./image-header.js";

export type KernelFormat = "bzImage" | "arm64 Image" | "arm64 Image.gz" | "arm64 EFI zboot" | "ELF vmlinux";

export type ConfigSource =
  | { readonly kind: "ikconfig"; readonly offset: number }
  /** A config-<release> file next to the image (Debian's /boot layout), for kernels without IKCONFIG. */
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "none" };

export type RowStatus = "ok" | "missing" | "unknown";

export interface ReadinessRow {
  readonly feature: string;
  /** Option names without CONFIG_. */
  readonly options: readonly string[];
  /** Each option's value ("y", "m", "n", a literal), undefined when the config lacks it or is unknown. */
  readonly values: readonly (string | undefined)[];
  readonly status: RowStatus;
  /** Required to boot scenarios at all; the others only let more scenarios run. */
  readonly required: boolean;
}

export type ProblemKind = "wrong-arch" | "no-config" | "no-kho";

export interface Problem {
  readonly kind: ProblemKind;
  /** The one sentence a refusal prints. */
  readonly sentence: string;
  readonly evidence: readonly string[];
}

export interface KernelReport {
  readonly path: string;
  readonly arch: KernelArch;
  readonly format: KernelFormat;
  readonly compression: Compression | "none";
  /** Time spent decompressing to reach the config, when there was something to decompress. */
  readonly decompressMs: number | undefined;
  /** `uname -r` of the kernel: "6.1.0-18-cloud-amd64". */
  readonly release: string | undefined;
  /** The full version string (bzImage kernel_version or the linux_banner line). */
  readonly version: string | undefined;
  /** Header facts for display, in order: ["boot protocol", "2.15"], ... */
  readonly details: readonly (readonly [string, string])[];
  readonly config: ConfigMap | undefined;
  readonly configSource: ConfigSource;
  readonly readiness: readonly ReadinessRow[];
  /** Why it cannot boot scenarios, most fundamental first; empty when ready. */
  readonly problems: readonly Problem[];
  readonly ready: boolean;
}

export interface InspectOptions {
  /** The arch the caller means to boot it on; a mismatch is a problem. */
  readonly expectArch?: ArchName | undefined;
}

const ROWS: readonly { feature: string; options: readonly string[]; required?: true }[] = [
  { feature: "KHO", options: ["KEXEC_HANDOVER"], required: true },
  { feature: "KHO debugfs", options: ["KEXEC_HANDOVER_DEBUGFS"] },
  { feature: "LUO", options: ["LIVEUPDATE"] },
  { feature: "LUO memfd", options: ["LIVEUPDATE_MEMFD"] },
  { feature: "test options", options: ["TEST_KEXEC_HANDOVER", "LIVEUPDATE_TEST"] },
  { feature: "DEBUG_VM", options: ["DEBUG_VM"] },
  { feature: "hugetlbfs", options: ["HUGETLBFS"] },
  { feature: "modules", options: ["MODULES"] },
  { feature: "THP", options: ["TRANSPARENT_HUGEPAGE"] },
];

/** Any image larger than this is not a kernel (and would not fit a Buffer read anyway). */
const MAX_FILE = 1 << 30;

export async function inspectKernel(path: string, opts: InspectOptions = {}): Promise<KernelReport> {
  const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new HarnessError(`cannot read kernel image ${path}: ${e.code ?? e.message}`);
  });
  if (!info.isFile()) throw new HarnessError(`${path} is not a Linux kernel image (not a regular file)`);
  if (info.size > MAX_FILE) throw notAKernel(path, `${info.size} bytes, larger than any kernel image`);
  return inspectKernelBytes(await readFile(path), path, opts);
}

/** Refuses, with one sentence, a kernel the harness cannot boot scenarios on. Runs before every boot. */
export async function assertBootableKernel(path: string, arch: ArchName): Promise<KernelReport> {
  const report = await inspectBootable(path, arch);
  const [first] = report.problems;
  if (first) throw new HarnessError(first.sentence, first.evidence);
  return report;
}

/**
 * inspectKernel for a boot, remembered by the image's SHA-256: reaching the config of a
 * bzImage means decompressing it (~0.4 s), in every run. Only a ready report whose config is
 * inside the image is kept (a sibling config file can change on its own; a refusal names the
 * path, and is cheap to redo).
 */
async function inspectBootable(path: string, arch: ArchName): Promise<KernelReport> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile() || info.size > MAX_FILE) return inspectKernel(path, { expectArch: arch });
  const remembered = join(cacheRoot(), "inspect", `${await fileSha256(path)}-${arch}.json`);
  const text = await readFile(remembered, "utf8").catch(() => undefined);
  if (text !== undefined) {
    try {
      const saved = JSON.parse(text) as Omit<KernelReport, "config" | "path"> & {
        config: [string, string][];
      };
      return { ...saved, path, config: new Map(saved.config) };
    } catch {
      // A torn write: inspect again and rewrite it.
    }
  }
  const report = await inspectKernelBytes(await readFile(path), path, { expectArch: arch });
  if (report.ready && report.configSource.kind === "ikconfig" && report.config) {
    await mkdir(dirname(remembered), { recursive: true });
    await writeFileAtomic(
      remembered,
      JSON.stringify({ ...report, path: undefined, config: [...report.config] }),
    );
  }
  return report;
}

function notAKernel(path: string, reason: string): HarnessError {
  return new HarnessError(`${path} is not a Linux kernel image (no bzImage HdrS or arm64 Image magic)`, [
    reason,
  ]);
}

interface Content {
  readonly format: KernelFormat;
  readonly compression: Compression | "none";
  readonly decompressMs: number | undefined;
  /** The bytes that hold IKCONFIG and the banner: vmlinux or the arm64 Image. */
  readonly bytes: Uint8Array;
  readonly version: string | undefined;
  readonly details: (readonly [string, string])[];
}

/** The same as inspectKernel on bytes already read; `path` names the file in sentences. */
export async function inspectKernelBytes(
  bytes: Uint8Array,
  path: string,
  opts: InspectOptions = {},
): Promise<KernelReport> {
  const image = await readKernelImage(bytes);
  if (image.kind === "not-a-kernel") throw notAKernel(path, image.reason);
  const content = await contentOf(image, bytes);
  const banner = findBanner(content.bytes);
  const version = content.version ?? banner?.banner.replace(/^Linux version /, "");
  const release = version ? releaseOf(version) : undefined;

  const embedded = findIkconfig(content.bytes);
  let config = embedded?.config;
  let configSource: ConfigSource = embedded
    ? { kind: "ikconfig", offset: embedded.offset }
    : { kind: "none" };
  if (!config) {
    const file = await siblingConfig(path, release);
    if (file) [config, configSource] = [file.config, { kind: "file", path: file.path }];
  }
  const readiness = readinessOf(config);
  const problems = findProblems(path, image.arch, release, opts.expectArch, configSource, readiness);
  return {
    path,
    arch: image.arch,
    format: content.format,
    compression: content.compression,
    decompressMs: content.decompressMs,
    release,
    version,
    details: content.details,
    config,
    configSource,
    readiness,
    problems,
    ready: problems.length === 0,
  };
}

async function contentOf(
  image: Exclude<KernelImage, { kind: "not-a-kernel" }>,
  file: Uint8Array,
): Promise<Content> {
  switch (image.kind) {
    case "bzImage": {
      // IKCONFIG is inside the vmlinux, which is the compressed payload.
      const h = image.header;
      const payload = file.subarray(h.payloadFileOffset, h.payloadFileOffset + h.payloadLength);
      const out = await decompress(payload, {
        what: "bzImage payload",
        offset: h.payloadFileOffset,
        sizeTrailer: true,
      });
      if (!isElf(out.data))
        throw new DecodeError(
          "bzImage payload",
          h.payloadFileOffset,
          "decompresses to something other than an ELF vmlinux",
        );
      const elf = parseElfHeader(out.data);
      const xlf = h.xloadflags;
      const flags = [
        xlf.kernel64 && "64-bit entry",
        xlf.canLoadAbove4G && "loads above 4G",
        xlf.efiHandover32 && "EFI handover 32",
        xlf.efiHandover64 && "EFI handover 64",
        xlf.efiKexec && "EFI kexec",
      ].filter((f): f is string => typeof f === "string");
      return {
        format: "bzImage",
        compression: out.format,
        decompressMs: out.ms,
        bytes: out.data,
        version: h.kernelVersion,
        details: [
          ["boot protocol", h.protocol],
          ["xloadflags", `0x${xlf.raw.toString(16)} (${flags.join(", ") || "none"})`],
          [
            "payload",
            `${h.payloadLength} bytes at 0x${h.payloadFileOffset.toString(16)}, ${out.data.length} decompressed`,
          ],
          ["vmlinux", `ELF${elf.bits} ${elf.arch}`],
        ],
      };
    }
    case "arm64-image": {
      const h = image.header;
      const w = image.wrapper;
      const format =
        w.kind === "none" ? "arm64 Image" : w.kind === "gzip" ? "arm64 Image.gz" : "arm64 EFI zboot";
      return {
        format,
        compression: w.kind === "none" ? "none" : w.kind === "gzip" ? "gzip" : w.compression,
        decompressMs: w.kind === "none" ? undefined : w.ms,
        bytes: image.image,
        version: undefined,
        details: [
          ["text_offset", `0x${h.textOffset.toString(16)}`],
          ["image_size", `${h.imageSize} bytes`],
          ["flags", `${h.flags.bigEndian ? "big" : "little"}-endian, ${h.flags.pageSize} pages`],
          ["EFI stub", h.efiStub ? `yes (PE header at 0x${h.peOffset.toString(16)})` : "no"],
        ],
      };
    }
    case "elf":
      return {
        format: "ELF vmlinux",
        compression: "none",
        decompressMs: undefined,
        bytes: file,
        version: undefined,
        details: [
          ["ELF", `ELF${image.header.bits} ${image.header.endian}-endian, e_machine ${image.header.machine}`],
        ],
      };
  }
}

/** Debian's /boot keeps config-<release> next to vmlinuz-<release>. */
async function siblingConfig(
  path: string,
  release: string | undefined,
): Promise<{ path: string; config: ConfigMap } | undefined> {
  const names = new Set<string>();
  const suffix = /^(?:vmlinuz|vmlinux|bzImage|Image)-(.+?)(?:\.gz)?$/.exec(basename(path))?.[1];
  // The release comes from the file itself: only a plain name may become a path.
  for (const r of [release, suffix]) if (r && /^[\w.+~-]+$/.test(r)) names.add(`config-${r}`);
  for (const name of names) {
    const candidate = join(dirname(path), name);
    const text = await readFile(candidate, "utf8").catch(() => undefined);
    if (text !== undefined) return { path: candidate, config: parseConfig(text) };
  }
  return undefined;
}

/** The readiness table for a config (undefined: every row unknown); also a machine target's. */
export function readinessOf(config: ConfigMap | undefined): ReadinessRow[] {
  return ROWS.map((row) => rowFor(row.feature, row.options, row.required ?? false, config));
}

function rowFor(
  feature: string,
  options: readonly string[],
  required: boolean,
  config: ConfigMap | undefined,
): ReadinessRow {
  const values = options.map((o) => config?.get(o));
  const on = values.every((v) => v === "y" || v === "m");
  return { feature, options, values, status: config ? (on ? "ok" : "missing") : "unknown", required };
}

function findProblems(
  path: string,
  arch: KernelArch,
  release: string | undefined,
  expectArch: ArchName | undefined,
  source: ConfigSource,
  readiness: readonly ReadinessRow[],
): Problem[] {
  const problems: Problem[] = [];
  if (expectArch && arch !== expectArch) {
    problems.push({
      kind: "wrong-arch",
      sentence: `${path} is ${article(arch)} ${arch} kernel, but --arch ${expectArch} was asked`,
      evidence: [],
    });
  } else if (!isArchName(arch)) {
    problems.push({
      kind: "wrong-arch",
      sentence: `${path} is ${article(arch)} ${arch} kernel; the harness boots x86_64 and arm64 only`,
      evidence: [],
    });
  }
  const named = `${path} (Linux ${release ?? "of unknown version"})`;
  if (source.kind === "none") {
    problems.push({
      kind: "no-config",
      sentence: `cannot check ${named} for KHO: it was built without CONFIG_IKCONFIG; enable CONFIG_IKCONFIG=y`,
      evidence: [`no "IKCFG_ST" in the image and no config-${release ?? "<release>"} next to it`],
    });
  }
  for (const row of readiness) {
    if (!row.required || row.status !== "missing") continue;
    const evidence = row.options.map((o, i) => `CONFIG_${o}=${row.values[i] ?? "(absent)"}`);
    if (source.kind === "file") evidence.push(`config read from ${source.path}: the image has no IKCONFIG`);
    problems.push({
      kind: "no-kho",
      sentence: `${named} has CONFIG_${row.options[0] ?? row.feature} off: enable CONFIG_KEXEC_HANDOVER=y (and LIVEUPDATE) — the harness's \`kho kernel build\` does this`,
      evidence,
    });
  }
  return problems;
}

const article = (word: string) => (/^[aeiou]/i.test(word) || /^x86/.test(word) ? "an" : "a");

function describeSource(s: ConfigSource, config: ConfigMap | undefined): string {
  const n = config ? `, ${config.size} options` : "";
  switch (s.kind) {
    case "ikconfig":
      return `embedded (IKCONFIG)${n}`;
    case "file":
      return `${s.path} (the image has no IKCONFIG)${n}`;
    case "none":
      return "unknown: built without CONFIG_IKCONFIG and no config file next to it";
  }
}

const show = (o: string, v: string | undefined) => `CONFIG_${o}=${v ?? "(absent)"}`;

/** A readable report: facts, then the readiness table, then the verdict. */
export function formatReport(r: KernelReport): string {
  const fmt = r.compression === "none" ? r.format : `${r.format}, ${r.compression}-compressed`;
  const took = r.decompressMs === undefined ? "" : ` (decompressed in ${Math.round(r.decompressMs)} ms)`;
  const facts: [string, string][] = [
    ["file", r.path],
    ["format", fmt + took],
    ["arch", r.arch],
    ["release", r.release ?? "unknown"],
    ["version", r.version ?? "unknown"],
    ...r.details.map(([k, v]): [string, string] => [k, v]),
    ["config", describeSource(r.configSource, r.config)],
  ];
  const w = Math.max(...facts.map(([k]) => k.length));
  const lines = facts.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  const table = [
    ["feature", "status", "needed", "options"],
    ...r.readiness.map((row) => [
      row.feature,
      row.status,
      row.required ? "required" : "optional",
      row.options.map((o, i) => (r.config ? show(o, row.values[i]) : `CONFIG_${o}`)).join(" "),
    ]),
  ];
  const widths = [0, 1, 2].map((c) => Math.max(...table.map((t) => (t[c] ?? "").length)));
  lines.push(
    "",
    ...table.map((t) =>
      t
        .map((cell, c) => cell.padEnd(widths[c] ?? 0))
        .join("  ")
        .trimEnd(),
    ),
    "",
  );
  if (r.ready)
    lines.push("verdict: ready for KHO scenarios (optional rows that are missing make some scenarios skip)");
  else lines.push(...r.problems.map((p) => `verdict: not ready: ${p.sentence}`));
  return lines.join("\n");
}

/** The report as plain JSON: the config as an object keyed by full CONFIG_ names. */
export function reportToJson(r: KernelReport): Record<string, unknown> {
  return {
    path: r.path,
    arch: r.arch,
    format: r.format,
    compression: r.compression,
    decompressMs: r.decompressMs === undefined ? null : Math.round(r.decompressMs),
    release: r.release ?? null,
    version: r.version ?? null,
    details: Object.fromEntries(r.details),
    configSource: r.configSource,
    readiness: r.readiness.map((row) => ({
      feature: row.feature,
      status: row.status,
      required: row.required,
      options: Object.fromEntries(row.options.map((o, i) => [`CONFIG_${o}`, row.values[i] ?? null])),
    })),
    ready: r.ready,
    problems: r.problems.map((p) => ({ kind: p.kind, sentence: p.sentence, evidence: p.evidence })),
    config: r.config ? Object.fromEntries([...r.config].map(([k, v]) => [`CONFIG_${k}`, v])) : null,
  };
}
