// A private apt configuration: its own sources list, package lists and download cache in a
// folder of ours, so the harness can fetch from any Debian suite (sid for linux-source-7.2,
// arm64 packages for the guest) without touching the system's apt setup.
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { HarnessError } from "../errors.js";
import { cachePaths } from "../paths.js";
import { writeFileAtomic } from "../util/build-slot.js";
import { buildOnce } from "../util/entry-lock.js";
import type { Logger } from "../util/log.js";

export const DEBIAN_MIRROR = process.env.KHO_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";
/** Package lists older than this are refreshed before a lookup. */
const LISTS_MAX_AGE_MS = 24 * 3600_000;

export interface AptRepoSpec {
  /** Folder name under the cache's apt/ directory. */
  readonly name: string;
  readonly suites: readonly string[];
  /** Debian architectures whose package lists are fetched. */
  readonly architectures: readonly string[];
}

/** sid for the kernel source, experimental for release candidates; both arches for guest packages. */
export const DEBIAN_UNSTABLE: AptRepoSpec = {
  name: "debian-unstable",
  suites: ["sid", "experimental"],
  architectures: ["amd64", "arm64"],
};

export class PrivateApt {
  readonly dir: string;

  constructor(
    readonly spec: AptRepoSpec,
    private readonly log: Logger,
  ) {
    this.dir = cachePaths.apt(spec.name);
  }

  private options(): string[] {
    const o = (k: string, v: string) => ["-o", `${k}=${v}`];
    return [
      ...o("Dir::Etc::sourcelist", join(this.dir, "sources.list")),
      ...o("Dir::Etc::sourceparts", "-"),
      ...o("Dir::State::Lists", join(this.dir, "lists")),
      ...o("Dir::Cache", join(this.dir, "cache")),
      // Our own empty dpkg status: what the host has installed must not change what we resolve.
      ...o("Dir::State::status", join(this.dir, "status")),
      ...o("APT::Architecture", this.spec.architectures[0] ?? "amd64"),
      ...this.spec.architectures.flatMap((a) => o("APT::Architectures::", a)),
      ...o("APT::Sandbox::User", "root"),
      ...o("Debug::NoLocking", "1"),
      ...o("Acquire::Retries", "3"),
    ];
  }

  /** Writes the configuration and refreshes the lists when they are missing or stale. */
  async ensureLists(): Promise<void> {
    await mkdir(join(this.dir, "lists", "partial"), { recursive: true });
    await mkdir(join(this.dir, "cache", "archives", "partial"), { recursive: true });
    const sources = this.spec.suites
      .map((s) => `deb [signed-by=${KEYRING}] ${DEBIAN_MIRROR} ${s} main\n`)
      .join("");
    await writeFile(join(this.dir, "sources.list"), sources);
    await writeFile(join(this.dir, "status"), "", { flag: "a" });
    const stamp = join(this.dir, "lists", ".updated");
    const fresh = () =>
      stat(stamp).then(
        (s) => (Date.now() - s.mtimeMs < LISTS_MAX_AGE_MS ? true : undefined),
        () => undefined,
      );
    // apt runs with NoLocking here: two kho processes must not write one set of lists at once.
    await buildOnce(
      join(this.dir, "lists.lock"),
      "fetching package lists",
      { log: this.log },
      fresh,
      async () => {
        await this.update(stamp);
        return true;
      },
    );
  }

  private async update(stamp: string): Promise<void> {
    this.log(
      `# apt: fetching package lists for ${this.spec.suites.join(", ")} (private config in ${this.dir})`,
    );
    const result = await execa("apt-get", [...this.options(), "-q", "update"], { reject: false, all: true });
    if (result.exitCode !== 0 || /^(W|E): Failed to fetch/m.test(result.all ?? "")) {
      throw new HarnessError(
        `apt could not fetch package lists from ${DEBIAN_MIRROR} (suites ${this.spec.suites.join(", ")})`,
        lastLines(result.all ?? "", 15),
      );
    }
    await writeFile(stamp, new Date().toISOString());
  }

  /** The version apt would download for `pkg` (may carry an `:arch` suffix), or undefined. */
  async candidate(pkg: string): Promise<string | undefined> {
    await this.ensureLists();
    const version = await this.memo(`candidate ${pkg}`, async () => {
      const r = await execa("apt-cache", [...this.options(), "policy", pkg], { reject: false });
      const match = /Candidate:\s*(\S+)/.exec(r.stdout);
      return match?.[1] && match[1] !== "(none)" ? match[1] : "";
    });
    return version || undefined;
  }

  /**
   * apt-cache rebuilds its package cache on every call here (seconds for sid's lists), so
   * answers are remembered until the lists are next refreshed: a warm run asks apt nothing.
   */
  private async memo(key: string, compute: () => Promise<string>): Promise<string> {
    const path = join(this.dir, "lookups.json");
    const stamp = await readFile(join(this.dir, "lists", ".updated"), "utf8").catch(() => "");
    const saved = await readFile(path, "utf8")
      .then((t) => JSON.parse(t) as { stamp: string; answers: Record<string, string> })
      .catch((): { stamp: string; answers: Record<string, string> } => ({ stamp, answers: {} }));
    const answers = saved.stamp === stamp ? saved.answers : {};
    const known = answers[key];
    if (known !== undefined) return known;
    const value = await compute();
    answers[key] = value;
    await writeFileAtomic(path, JSON.stringify({ stamp, answers }, null, 1));
    return value;
  }

  /** Package names matching an extended regex (apt-cache search --names-only). */
  async searchNames(regex: string): Promise<string[]> {
    await this.ensureLists();
    const r = await execa("apt-cache", [...this.options(), "search", "--names-only", regex], {
      reject: false,
    });
    return r.stdout
      .split("\n")
      .map((l) => l.split(" - ")[0]?.trim() ?? "")
      .filter(Boolean);
  }

  /**
   * Downloads .debs (names may be `pkg:arch` or `pkg=version`) into `destDir`, reusing files
   * already there. Returns the path of each package's .deb, in order.
   */
  async download(packages: readonly string[], destDir: string): Promise<string[]> {
    await this.ensureLists();
    await mkdir(destDir, { recursive: true });
    const names = await this.debFileNames(packages);
    const paths = names.map((n) => join(destDir, n));
    const missingNow = async () => {
      const have = new Set(await readdir(destDir));
      return packages.filter((_, i) => !have.has(names[i] as string));
    };
    return buildOnce(
      join(destDir, ".download.lock"),
      `downloading ${packages.join(" ")}`,
      { log: this.log },
      async () => ((await missingNow()).length === 0 ? paths : undefined),
      async () => {
        const missing = await missingNow();
        this.log(`# apt: downloading ${missing.join(" ")}`);
        const r = await execa("apt-get", [...this.options(), "-q", "download", ...missing], {
          cwd: destDir,
          reject: false,
          all: true,
        });
        if (r.exitCode !== 0) {
          throw new HarnessError(`apt could not download ${missing.join(" ")}`, lastLines(r.all ?? "", 15));
        }
        return paths;
      },
    );
  }

  /**
   * The file names `apt-get download` writes (name_version_arch.deb, the epoch colon as %3a),
   * from one apt-cache call for all packages: each call loads the whole package cache.
   */
  private async debFileNames(packages: readonly string[]): Promise<string[]> {
    const joined = await this.memo(`debs ${packages.join(" ")}`, async () =>
      (await this.resolveDebFileNames(packages)).join(" "),
    );
    return joined.split(" ");
  }

  private async resolveDebFileNames(packages: readonly string[]): Promise<string[]> {
    const r = await execa("apt-cache", [...this.options(), "show", "--no-all-versions", ...packages], {
      reject: false,
    });
    const records = r.stdout.split(/\n\n+/).filter((rec) => rec.trim());
    const field = (rec: string, name: string) => new RegExp(`^${name}:\\s*(\\S+)$`, "m").exec(rec)?.[1];
    return packages.map((pkg) => {
      const [name, arch] = pkg.split(":") as [string, string | undefined];
      const rec = records.find(
        (x) =>
          field(x, "Package") === name && (!arch || [arch, "all"].includes(field(x, "Architecture") ?? "")),
      );
      const version = rec && field(rec, "Version");
      const debArch = rec && field(rec, "Architecture");
      if (!version || !debArch) {
        throw new HarnessError(`Debian package ${pkg} is not in ${this.spec.suites.join("/")}`);
      }
      return `${name}_${version.replace(/:/g, "%3a")}_${debArch}.deb`;
    });
  }
}

export function lastLines(text: string, n: number): string[] {
  return text.trimEnd().split("\n").slice(-n);
}
