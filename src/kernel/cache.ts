// The kernel cache: one folder per build key holding the boot image, modules, headers, the
// final .config, the build log and a manifest written last. An entry is trusted only if its
// manifest parses and the image still has the size and hash the manifest recorded, so an
// entry cut short by a crash is rebuilt, never booted. The hash is remembered against the
// image's inode, size and times (fileSha256): an image that changed in any way is hashed again.
import { access, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ArchName } from "../arch.js";
import { cachePaths } from "../paths.js";
import { writeFileAtomic } from "../util/build-slot.js";
import { fileSha256 } from "../util/hash.js";

export const MANIFEST_SCHEMA = 2;

export interface KernelManifest {
  readonly schema: typeof MANIFEST_SCHEMA;
  readonly key: string;
  readonly arch: ArchName;
  /** "linux-source-7.2 7.2.13-1" or "git <sha>[+dirty-...]". */
  readonly sourceIdentity: string;
  readonly sourceTree: string;
  /** The O= directory, kept for building out-of-tree modules against this kernel. */
  readonly buildDir: string;
  readonly kernelRelease: string;
  readonly compiler: string;
  readonly fragments: readonly { name: string; sha256: string }[];
  readonly configSha256: string;
  /** File names inside the entry folder. */
  readonly image: string;
  readonly imageSha256: string;
  readonly imageSize: number;
  readonly modulesDir: string;
  readonly headersDir: string;
  readonly builtAt: string;
  /** What the fragments were merged over: "lean", "defconfig" or "file <sha256>". */
  readonly base: string;
  /** Wall time of each build phase, in milliseconds. */
  readonly phaseMs: Readonly<Record<string, number>>;
  /** Wall time of the whole build (configure to manifest). */
  readonly wallMs: number;
  /** User + system CPU seconds of make and all its children, over every phase. */
  readonly cpuSeconds: number;
  /** Kbuild's object count, so the next build of the same tree can show a percentage. */
  readonly objectCount: number;
}

export interface CachedKernel {
  readonly dir: string;
  readonly manifest: KernelManifest;
  readonly imagePath: string;
  readonly configPath: string;
}

export function entryDir(key: string): string {
  return join(cachePaths.kernels(), key);
}

export type CacheLookup =
  | { readonly state: "hit"; readonly kernel: CachedKernel }
  | { readonly state: "miss" }
  | { readonly state: "corrupt"; readonly reason: string };

export async function lookupKernel(key: string): Promise<CacheLookup> {
  const dir = entryDir(key);
  const text = await readFile(join(dir, "kernel.json"), "utf8").catch(() => undefined);
  if (text === undefined) {
    const partial = await access(dir).then(
      () => true,
      () => false,
    );
    return partial ? { state: "corrupt", reason: "no manifest (build interrupted)" } : { state: "miss" };
  }
  let manifest: KernelManifest;
  try {
    manifest = JSON.parse(text) as KernelManifest;
  } catch {
    return { state: "corrupt", reason: "manifest is not valid JSON" };
  }
  if (manifest.schema !== MANIFEST_SCHEMA) {
    return { state: "corrupt", reason: `manifest schema ${String(manifest.schema)}` };
  }
  const imagePath = join(dir, manifest.image);
  const size = await stat(imagePath).then(
    (s) => s.size,
    () => -1,
  );
  if (size !== manifest.imageSize)
    return { state: "corrupt", reason: `image size ${size} != ${manifest.imageSize}` };
  if ((await fileSha256(imagePath)) !== manifest.imageSha256)
    return { state: "corrupt", reason: "image hash mismatch" };
  return { state: "hit", kernel: { dir, manifest, imagePath, configPath: join(dir, "config") } };
}

/** Writes the manifest atomically: the entry becomes visible only when complete. */
export async function commitManifest(dir: string, manifest: KernelManifest): Promise<void> {
  await writeFileAtomic(join(dir, "kernel.json"), JSON.stringify(manifest, null, 2) + "\n");
}

export async function listKernels(): Promise<{ key: string; lookup: CacheLookup }[]> {
  const keys = await readdir(cachePaths.kernels()).catch(() => [] as string[]);
  return Promise.all(keys.sort().map(async (key) => ({ key, lookup: await lookupKernel(key) })));
}

/** The newest good entry for an arch (what `kho run` boots when nothing else is said). */
export async function newestKernel(arch: ArchName): Promise<CachedKernel | undefined> {
  const hits = (await listKernels())
    .map((e) => e.lookup)
    .filter(
      (l): l is { state: "hit"; kernel: CachedKernel } =>
        l.state === "hit" && l.kernel.manifest.arch === arch,
    )
    .map((l) => l.kernel)
    .sort((a, b) => b.manifest.builtAt.localeCompare(a.manifest.builtAt));
  return hits[0];
}

export async function cleanKernels(): Promise<string[]> {
  const removed = [cachePaths.kernels(), cachePaths.builds()];
  await Promise.all(removed.map((d) => rm(d, { recursive: true, force: true })));
  return removed;
}
