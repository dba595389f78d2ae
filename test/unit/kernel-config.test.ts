import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import { archSpec } from "../../src/arch.js";
import {
  explainMissing,
  findMissing,
  loadFragments,
  parseConfig,
  requiredOptions,
} from "../../src/kernel/config.js";

describe("parseConfig", () => {
  it("reads set, unset and string options; later lines win", () => {
    const map = parseConfig(
      [
        "CONFIG_A=y",
        "# CONFIG_B is not set",
        'CONFIG_C="ttyS0"',
        "CONFIG_D=m",
        "CONFIG_A=n",
        "# comment",
        "",
      ].join("\n"),
    );
    expect(Object.fromEntries(map)).toEqual({ A: "n", B: "n", C: "ttyS0", D: "m" });
  });
});

function expectAllY(required: Map<string, string>, options: readonly string[]): void {
  for (const opt of options) expect(required.get(opt), opt).toBe("y");
}

describe("fragments", () => {
  it("require what the checked fragments ask for, and not the trims", async () => {
    const fragments = await loadFragments(archSpec("arm64"), [], true);
    const required = requiredOptions(fragments);
    expectAllY(required, [
      "KEXEC_HANDOVER",
      "LIVEUPDATE",
      "LIVEUPDATE_MEMFD",
      "TEST_KEXEC_HANDOVER",
      "IKCONFIG",
      "SERIAL_AMBA_PL011_CONSOLE",
    ]);
    expect(required.has("DRM")).toBe(false);
    expect(required.has("SERIAL_8250_CONSOLE")).toBe(false);
  });

  it("name what Kconfig's defaults leave out (the lean base); a user's base gets no trims", async () => {
    const lean = await loadFragments(archSpec("x86_64"), [], true);
    expect(lean.map((f) => basename(f.path))).toEqual(["common.config", "x86_64.config", "trim.config"]);
    const required = requiredOptions(lean);
    // what defconfig gave for free and the guest needs: the userspace disk, ip=, NUMA, MSI,
    // the console timestamps, tracepoints, ACPI for q35
    expectAllY(required, [
      "ROMFS_FS",
      "ROMFS_BACKED_BY_BLOCK",
      "IP_PNP",
      "NUMA",
      "PCI_MSI",
      "PRINTK_TIME",
      "ENABLE_DEFAULT_TRACERS",
      "ACPI",
    ]);
    // trims are never required: IPv6 off is a wish, not a check
    expect(required.has("IPV6")).toBe(false);
    const userBase = await loadFragments(archSpec("x86_64"), [], false);
    expect(userBase.map((f) => basename(f.path))).not.toContain("trim.config");
  });

  it("let a user fragment override ours", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kho-frag-"));
    await writeFile(join(dir, "mine.config"), "# CONFIG_DEBUG_VM is not set\nCONFIG_KASAN=y\n");
    const required = requiredOptions(
      await loadFragments(archSpec("x86_64"), [join(dir, "mine.config")], false),
    );
    expect(required.get("DEBUG_VM")).toBe("n");
    expect(required.get("KASAN")).toBe("y");
    await rm(dir, { recursive: true, force: true });
  });

  it("find what olddefconfig dropped", () => {
    const missing = findMissing(
      parseConfig("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set"),
      parseConfig("CONFIG_A=y\nCONFIG_C=y"),
    );
    expect(missing).toEqual([
      { name: "B", wanted: "y", actual: "n" },
      { name: "C", wanted: "n", actual: "y" },
    ]);
  });
});

describe("explainMissing", () => {
  it("names the dependency and the enclosing if-block with current values", async () => {
    const tree = await mkdtemp(join(tmpdir(), "kho-kconfig-"));
    await mkdir(join(tree, "lib"));
    await writeFile(
      join(tree, "lib", "Kconfig.debug"),
      [
        "menuconfig RUNTIME_TESTING_MENU",
        '\tbool "Runtime testing"',
        "if RUNTIME_TESTING_MENU",
        "config OTHER",
        "\tbool",
        "if FOO",
        "endif",
        "config LIVEUPDATE_TEST",
        '\tbool "Live Update Kernel Test"',
        "\tdepends on LIVEUPDATE",
        "\thelp",
        "\t  text",
        "endif # RUNTIME_TESTING_MENU",
      ].join("\n"),
    );
    const why = await explainMissing(tree, "LIVEUPDATE_TEST", parseConfig("CONFIG_RUNTIME_TESTING_MENU=y"));
    expect(why).toBe(
      "depends on LIVEUPDATE && RUNTIME_TESTING_MENU (LIVEUPDATE=n, RUNTIME_TESTING_MENU=y) [lib/Kconfig.debug:8]",
    );
    expect(await explainMissing(tree, "NOPE", new Map())).toMatch(/no Kconfig in this tree defines NOPE/);
    await rm(tree, { recursive: true, force: true });
  });
});
