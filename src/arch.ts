// One table answers every per-arch question (after virtme-ng's architectures.py):
// nothing else in the code should branch on the arch name.

export const ARCH_NAMES = ["x86_64", "arm64"] as const;
export type ArchName = (typeof ARCH_NAMES)[number];

export interface ArchSpec {
  readonly name: ArchName;
  /** Debian's name for the arch (apt, .deb file names). */
  readonly debianArch: "amd64" | "arm64";
  /** The kernel's ARCH= value. */
  readonly kernelArch: "x86" | "arm64";
  /** Prefix for cross tools, empty when the host builds natively. */
  readonly crossCompile: string;
  /** The host's Debian package providing that compiler (for `kho doctor`). */
  readonly compilerPackage: string;
  /** Boot image path inside a kernel build directory. */
  readonly imagePath: string;
  /** The make target that produces the boot image. */
  readonly imageTarget: string;
  readonly qemuBinary: string;
  readonly qemuPackage: string;
  readonly machine: string;
  /** -cpu under TCG; under KVM the host's own CPU model ("host") is used. */
  readonly cpu: string;
  /** -accel value under TCG. */
  readonly tcgAccel: string;
  /** Kernel console device for the first serial port. */
  readonly console: string;
  /** Kernel parameters every guest of this arch boots with (after console=, before the rest). */
  readonly kernelParams: readonly string[];
  /**
   * The parameter that prints the kernel's messages before its console driver is up (a boot
   * that asks for it: GuestBoot.earlyConsole), so a crash in early boot is seen, not just QEMU
   * exiting after the old kernel's last line.
   */
  readonly earlyConsole: string;
  /** ELF e_machine of vmlinux / user binaries for this arch. */
  readonly elfMachine: number;
  /** How KHO reaches the next kernel (informational; the kernel does it inside kexec_file_load). */
  readonly handover: string;
  /** The per-arch config fragment under images/config/. */
  readonly configFragment: string;
  /** Node's `process.arch` on hosts whose KVM can run this guest arch. */
  readonly kvmHostArch: "x64" | "arm64";
  /** The `kind` of a software breakpoint in GDB's remote protocol (the instruction's size). */
  readonly gdbBreakpointKind: number;
  /** Which stub firmware the KVM probe boots (built in src/vm/probe-stub.ts). */
  readonly probeStub: "x86-reset-vector" | "arm64-pl011";
  /** Guest-physical address where the machine's RAM starts (its size is the -m value). */
  readonly ramBase: bigint;
  /**
   * A vCPU's program counter in QEMU's `info registers` output; group 1 is its hex value. No
   * `g` flag (the table is shared): programCounters() in src/vm/qemu.ts finds every vCPU's.
   */
  readonly pcRegister: RegExp;
}

const HOST_IS_ARM64 = process.arch === "arm64";

/**
 * Kernel parameters for the guest's NIC, both arches. TX completions reaped on transmit instead
 * of in NAPI: 7.2's device_shutdown() breaks every virtqueue (virtio_device_shutdown) while NAPI
 * still polls, and virtnet_poll_cleantx() can then loop forever on a broken TX queue whose
 * device had completed most buffers (fixed upstream by 0d0eff39ceb3 "virtio_ring: fix infinite
 * loop in virtnet_poll_cleantx when device is broken", in 7.3; not in 7.2.13). It hung the
 * kexec about 1 in 150 `memfd-basic` runs (an RCU stall, or a silent guest with CPU0 in
 * virtqueue_enable_cb_delayed), and 3 in 55 `kexec-traffic` runs (bulk TCP at the kexec) on
 * arm64; with this, none of 89 (README, "Flakes"). The kexec'd kernel inherits it (the agent's
 * kexec_file_load passes the running command line). A user's own kernel gets it too.
 */
const NET_PARAMS = ["virtio_net.napi_tx=0"];

const X86_64: ArchSpec = {
  name: "x86_64",
  debianArch: "amd64",
  kernelArch: "x86",
  crossCompile: HOST_IS_ARM64 ? "x86_64-linux-gnu-" : "",
  compilerPackage: HOST_IS_ARM64 ? "gcc-x86-64-linux-gnu" : "gcc",
  imagePath: "arch/x86/boot/bzImage",
  imageTarget: "bzImage",
  qemuBinary: "qemu-system-x86_64",
  qemuPackage: "qemu-system-x86",
  // No PS/2 controller: the kernel's probe of the PS/2 mouse takes ~0.4 s under TCG, and
  // CONFIG_IP_PNP (ip= on the command line) waits for every pending probe before /init runs.
  machine: "q35,i8042=off",
  cpu: "max",
  // One TCG thread for all vCPUs: with multi-threaded TCG, x86's int3-based live text patching
  // (static keys) races with the other vCPU's translated code and oopses at boot now and then
  // ("Oops: int3" in enqueue_task_fair, seen here with the first round's defconfig kernels);
  // arm64 patches under stop_machine. With the lean kernels MTTCG showed no Oops in 5 suites
  // (550 boots), but was slower here: two guests on two cores, 5m13s against 4m36s (README,
  // "Flakes").
  tcgAccel: "tcg,thread=single",
  console: "ttyS0",
  // Boot-time IO-APIC timer test off, as VM images do: it counts timer ticks during a delay
  // measured on the TSC (io_apic.c timer_irq_works), and a TCG vCPU starved by a busy host
  // gets too few ticks in that window and panics ("IO-APIC + timer doesn't work!"), seen here
  // in a kexec'd kernel with four guests on two cores. The timer itself is the same either way.
  // No clocksource watchdog on the TSC, as VM images with a reliable TSC have: under TCG the TSC
  // and the HPET are both read off the host clock, and a vCPU starved by a busy host can make
  // them disagree. Seen here once in 652 x86_64 boots (`--repeat 20`): the watchdog marked the
  // TSC unstable ("frequency skew") right after /init wrote its ready line to /dev/kmsg, and that
  // line never reached the console (README, "Flakes").
  kernelParams: ["no_timer_check", "tsc=nowatchdog", ...NET_PARAMS],
  earlyConsole: "earlyprintk=serial,ttyS0,115200",
  elfMachine: 62,
  handover: "setup_data SETUP_KEXEC_KHO (type 0xa) in boot_params",
  configFragment: "x86_64.config",
  kvmHostArch: "x64",
  gdbBreakpointKind: 1,
  probeStub: "x86-reset-vector",
  ramBase: 0n,
  // RIP in long mode, EIP before it (the KVM probe's stub runs from the reset vector in real mode).
  pcRegister: /\b[ER]IP=([0-9a-f]+)/i,
};

const ARM64: ArchSpec = {
  name: "arm64",
  debianArch: "arm64",
  kernelArch: "arm64",
  crossCompile: HOST_IS_ARM64 ? "" : "aarch64-linux-gnu-",
  compilerPackage: HOST_IS_ARM64 ? "gcc" : "gcc-aarch64-linux-gnu",
  imagePath: "arch/arm64/boot/Image",
  imageTarget: "Image",
  qemuBinary: "qemu-system-aarch64",
  qemuPackage: "qemu-system-arm",
  machine: "virt",
  // A real server core (Armv9.0, as in today's arm64 cloud hosts) instead of "max": under
  // -cpu max the kernel booted by a KHO kexec ran ~2x slower than the cold-booted one (to
  // /init 3.1 s against 1.7 s), here 1.9 s against 1.2 s; the harness's test-kho took 7.7 s
  // and the raw vmtest.sh flow 5.4 s, here 5.7 and 5.1. Which of max's extra features costs
  // it (the memcpy/memset instructions, range TLBI, LPA2...) is not pinned down: turning off
  // LPA2, or SVE and SME, did not fix it. pauth-impdef: QEMU's cheap pointer-auth hash
  // instead of QARMA5.
  cpu: "neoverse-n2,pauth-impdef=on",
  tcgAccel: "tcg",
  console: "ttyAMA0",
  kernelParams: [...NET_PARAMS],
  // The device tree's /chosen stdout-path (QEMU virt: the PL011), before amba-pl011 registers.
  earlyConsole: "earlycon",
  elfMachine: 183,
  handover: "/chosen linux,kho-fdt and linux,kho-scratch in the device tree",
  configFragment: "arm64.config",
  kvmHostArch: "arm64",
  gdbBreakpointKind: 4,
  probeStub: "arm64-pl011",
  ramBase: 0x4000_0000n,
  pcRegister: /\bPC=([0-9a-f]+)/i,
};

const ARCHES: Record<ArchName, ArchSpec> = { x86_64: X86_64, arm64: ARM64 };

export function isArchName(value: string): value is ArchName {
  return (ARCH_NAMES as readonly string[]).includes(value);
}

export function archSpec(name: ArchName): ArchSpec {
  return ARCHES[name];
}

/** Parse a user's --arch value: one arch, or `all`. Accepts the common aliases. */
export function parseArchList(value: string): ArchName[] {
  const aliases: Record<string, ArchName> = { amd64: "x86_64", x86: "x86_64", aarch64: "arm64" };
  const out: ArchName[] = [];
  for (const raw of value.split(",")) {
    const word = raw.trim();
    if (word === "all") return [...ARCH_NAMES];
    const name = aliases[word] ?? word;
    if (!isArchName(name)) throw new Error(`unknown arch "${word}" (expected x86_64, arm64 or all)`);
    if (!out.includes(name)) out.push(name);
  }
  return out;
}
