// Per-run pieces of the guest's boot: a small cpio with this run's SSH keys, appended to the
// cached base image (the kernel unpacks concatenated archives in order), and a tar "disk" that
// carries the next kernel and initrd to kexec into.
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { dropbearHostKey, type SshKeys } from "../vm/keys.js";
import { CpioWriter } from "./cpio.js";

export function keysOverlay(keys: SshKeys): Uint8Array {
  return new CpioWriter()
    .dir("root", 0o700)
    .dir("root/.ssh", 0o700)
    .file("root/.ssh/authorized_keys", keys.client.public + "\n", 0o600)
    .dir("etc/dropbear", 0o700)
    .file("etc/dropbear/dropbear_ed25519_host_key", dropbearHostKey(keys.host.private), 0o600)
    .finish();
}

/** base image + overlay, written to `dest`. */
export async function writeBootInitrd(baseImage: string, overlay: Uint8Array, dest: string): Promise<void> {
  const base = await readFile(baseImage);
  await writeFile(dest, Buffer.concat([base, overlay]));
}

/** The guest's init unpacks this tar (a virtio disk with serial kho-next) into /boot. */
export async function writeNextKernelDisk(
  files: { readonly kernel: string; readonly initrd: string },
  dest: string,
): Promise<void> {
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(dest));
  for (const [name, path] of [
    ["next-kernel", files.kernel],
    ["next-initrd", files.initrd],
  ] as const) {
    const size = (await stat(path)).size;
    await new Promise<void>((resolve, reject) => {
      const entry = pack.entry({ name, size, mode: 0o644, mtime: new Date(0) }, (err) =>
        err ? reject(err) : resolve(),
      );
      createReadStream(path).on("error", reject).pipe(entry);
    });
  }
  pack.finalize();
  await out;
}
