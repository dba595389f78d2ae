// Debian's own cloud kernel for an arch: a real, well-formed kernel with KHO off, which the
// harness must refuse with one clear sentence (used by tests and by `kho kernel inspect` demos).
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DEBIAN_UNSTABLE, PrivateApt } from "../debian/apt.js";
import { archSpec, type ArchName } from "../arch.js";
import { HarnessError } from "../errors.js";
import { extractFiles } from "../debian/deb.js";
import { cacheRoot } from "../paths.js";
import type { Logger } from "../util/log.js";

export interface StockKernel {
  readonly image: string;
  readonly config: string | undefined;
  readonly pkg: string;
}

/**
 * Downloads Debian's unsigned cloud kernel (linux-binary-unsigned-*) and its config (from
 * linux-base-*) and lays them out as boot/vmlinuz-VER and boot/config-VER, as /boot has them.
 */
export async function fetchStockKernel(arch: ArchName, log: Logger): Promise<StockKernel> {
  const { debianArch } = archSpec(arch);
  const apt = new PrivateApt(DEBIAN_UNSTABLE, log);
  const names = await apt.searchNames(`^linux-binary-unsigned-[0-9.]+\\+deb[0-9]+-cloud-${debianArch}$`);
  const pkg = names.sort().at(-1);
  if (!pkg) throw new HarnessError(`Debian lists no unsigned cloud kernel for ${debianArch}`);
  const release = pkg.replace("linux-binary-unsigned-", "");
  const [binDeb, baseDeb] = await apt.download(
    [`${pkg}:${debianArch}`, `linux-base-${release}:${debianArch}`],
    join(cacheRoot(), "debs", debianArch),
  );
  const boot = join(cacheRoot(), "stock", arch, "boot");
  await mkdir(boot, { recursive: true });
  const image = join(boot, `vmlinuz-${release}`);
  const config = join(boot, `config-${release}`);
  const pick = async (deb: string, re: RegExp, dest: string): Promise<boolean> => {
    const files = await extractFiles(deb, (p) => re.test(p));
    const data = [...files.values()].find((e) => e.data)?.data;
    if (data) await writeFile(dest, data);
    return data !== undefined;
  };
  if (!(await pick(binDeb as string, /^usr\/lib\/modules\/[^/]+\/vmlinuz|^boot\/vmlinuz-/, image))) {
    throw new HarnessError(`${pkg} holds no kernel image where Debian puts it (usr/lib/modules/*/vmlinuz*)`);
  }
  const hasConfig = await pick(
    baseDeb as string,
    /^usr\/lib\/modules\/[^/]+\/config$|^boot\/config-/,
    config,
  );
  return { image, config: hasConfig ? config : undefined, pkg };
}
