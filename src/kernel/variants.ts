// Kernel variants: the default recipe plus source patches and config fragments (both under
// images/), for a kernel that differs from the harness's default in one named way. A scenario
// can ask for one as the kernel it kexecs into (Scenario.nextKernel); `kho kernel build
// --variant NAME` builds one by hand. Each is cached like any kernel (the patches are part of
// the source identity, the fragments part of the key).
import { HarnessError } from "../errors.js";
import { imagesDir } from "../paths.js";

export interface KernelVariant {
  readonly name: string;
  readonly description: string;
  /** Under images/patches/, applied in order. */
  readonly patches: readonly string[];
  /** Under images/config/, merged over the default fragments and checked the same way. */
  readonly fragments: readonly string[];
  /** How much slower a guest of it is under TCG here: its deadlines are scaled by this too. */
  readonly timeoutFactor?: number;
  /** Kernel parameters every guest booting it needs, for its memory size. */
  readonly append?: (memoryMiB: number) => string;
}

export type KernelVariantName = "max-order-9" | "debug";

export const KERNEL_VARIANTS: Readonly<Record<KernelVariantName, KernelVariant>> = {
  /**
   * MAX_PAGE_ORDER 9 instead of 10. Neither arch lets Kconfig set it in 7.2 (arm64's
   * ARCH_FORCE_MAX_ORDER has no prompt, x86_64 has no such option: mmzone.h fixes 10), so a
   * patch gives the option a prompt (arm64) or adds it (x86_64, range 9..10).
   */
  "max-order-9": {
    name: "max-order-9",
    description: "MAX_PAGE_ORDER 9: a next kernel that lacks the previous one's largest buddy order",
    patches: ["max-order-prompt.patch"],
    fragments: ["max-order-9.config"],
  },
  /** The kernel's bug detectors: KASAN, KFENCE, lockdep, DEBUG_LIST, UBSAN, DEBUG_OBJECTS. */
  debug: {
    name: "debug",
    description: "KASAN, KFENCE, lockdep, DEBUG_LIST, UBSAN and DEBUG_OBJECTS on top of the default recipe",
    patches: [],
    fragments: ["debug.config"],
    timeoutFactor: 3,
    // KHO sizes its scratch areas at 200% of the kernel's early reservations, which KASAN
    // makes too large for the guest: "KHO: Failed to reserve nid 0 scratch buffer" and KHO
    // disabled on a 1 GiB (and a 6 GiB) guest. Sizes of the harness's instead (lowmem, global,
    // per node): the next kernel's early allocations come from the scratch alone, its KASAN
    // shadow (1/8 of RAM) and memmap (1/64) among them, so the global area grows with the guest
    // (with 384 MiB a 6 GiB guest's next kernel died before its first console line).
    append: (memoryMiB) => `kho_scratch=32M,${Math.ceil(memoryMiB / 8 + memoryMiB / 64 + 128)}M,32M`,
  },
};

export function isKernelVariant(name: string): name is KernelVariantName {
  return Object.hasOwn(KERNEL_VARIANTS, name);
}

/** `--variant NAME`, or one sentence naming the variants there are. */
export function kernelVariant(name: string): KernelVariant & { readonly name: KernelVariantName } {
  if (!isKernelVariant(name))
    throw new HarnessError(
      `no kernel variant "${name}" (there are: ${Object.keys(KERNEL_VARIANTS).join(", ")})`,
    );
  return { ...KERNEL_VARIANTS[name], name };
}

export const VARIANT_HELP = `build and boot a named variant of the harness's kernel: ${Object.keys(KERNEL_VARIANTS).join(", ")}`;

/** The variant's files as paths. */
export function variantFiles(v: KernelVariant): { patches: string[]; fragments: string[] } {
  return {
    patches: v.patches.map((p) => imagesDir("patches", p)),
    fragments: v.fragments.map((f) => imagesDir("config", f)),
  };
}
