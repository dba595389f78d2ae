// kexec-metadata (abi/kexec_metadata.h): packed { u32 version; char previous_release[65]; u32 kexec_count; }

import { structReader } from "../blob.js";
import type { SubtreeDecoder } from "./decoder.js";

export const KEXEC_METADATA_SIZE = 73;

export interface KexecMetadata {
  readonly kind: "kexec-metadata";
  readonly version: number;
  /** `uname -r` of the kernel that did the kexec. */
  readonly previousRelease: string;
  /** 0 on a cold boot; each kexec adds one. */
  readonly kexecCount: number;
}

/** Same acceptance rules as kho_in_kexec_metadata() (kexec_handover.c:1457-1495). */
export function decodeKexecMetadata(bytes: Uint8Array, phys = 0n): KexecMetadata {
  const r = structReader(bytes, "kexec-metadata", phys);
  if (bytes.length < 4) r.fail(0, `blob is ${bytes.length} bytes, too small for a version`);
  const version = r.u32(0);
  if (version !== 1) r.fail(0, `kexec-metadata version ${version} is not supported (expected 1)`);
  if (bytes.length < KEXEC_METADATA_SIZE)
    r.fail(0, `blob is ${bytes.length} bytes, v1 needs ${KEXEC_METADATA_SIZE}`);
  return { kind: "kexec-metadata", version, previousRelease: r.chars(4, 65), kexecCount: r.u32(69) };
}

export const kexecMetadataSubtree: SubtreeDecoder<KexecMetadata> = {
  names: ["kexec-metadata"],
  kind: "kexec-metadata",
  decode: ({ bytes, subtree }) => decodeKexecMetadata(bytes, subtree.phys),
  format: (blob) => [
    `kexec-metadata v${blob.version}: previous release "${blob.previousRelease}", kexec count ${blob.kexecCount}`,
  ],
  toJson: (blob) => ({ ...blob }),
};
