import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** A stable short key for cache directory names. */
export function cacheKey(parts: Record<string, string>): string {
  return sha256(JSON.stringify(parts, Object.keys(parts).sort())).slice(0, 16);
}
