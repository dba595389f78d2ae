// Where the harness keeps what it downloads and builds. One root, overridable for CI or tests.
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (for images/, guest/). */
export const PROJECT_ROOT = fileURLToPath(new URL("..", import.meta.url));

export function cacheRoot(): string {
  const explicit = process.env.KHO_CACHE_DIR;
  if (explicit) return explicit;
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(xdg, "kho-harness");
}

export const cachePaths = {
  apt: (name: string) => join(cacheRoot(), "apt", name),
  sources: () => join(cacheRoot(), "src"),
  builds: () => join(cacheRoot(), "build"),
  kernels: () => join(cacheRoot(), "kernels"),
  hostFacts: () => join(cacheRoot(), "host.json"),
};

export const imagesDir = (...parts: string[]) => join(PROJECT_ROOT, "images", ...parts);
export const guestDir = (...parts: string[]) => join(PROJECT_ROOT, "guest", ...parts);
