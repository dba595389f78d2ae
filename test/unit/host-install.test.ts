import { describe, expect, it } from "vitest";
import { HarnessError } from "../../src/errors.js";
import { ensureHostTools, installCommands, planInstall } from "../../src/host/install.js";
import { HOST_TOOLS } from "../../src/host/tools.js";

const tools = (...ids: string[]) => HOST_TOOLS.filter((t) => ids.includes(t.id));

describe("doctor's install plan", () => {
  it("takes QEMU from backports on Debian stable, the rest from the release", async () => {
    const plan = await planInstall(tools("qemu-system-x86_64", "qemu-system-aarch64", "flex", "bison"), {
      ID: "debian",
      VERSION_CODENAME: "bookworm",
    });
    expect(plan).toEqual({
      plain: ["flex", "bison"],
      backports: ["qemu-system-x86", "qemu-system-arm"],
      backportsSuite: "bookworm-backports",
    });
    const cmds = installCommands(plan);
    expect(cmds[0]).toBe("apt-get update && apt-get install -y flex bison");
    expect(cmds[1]).toMatch(/apt-get install -y -t bookworm-backports qemu-system-x86 qemu-system-arm$/);
  });

  it("installs everything from the release on Ubuntu (no Debian backports)", async () => {
    const plan = await planInstall(tools("qemu-system-x86_64", "aarch64-linux-gnu-gcc"), {
      ID: "ubuntu",
      VERSION_CODENAME: "noble",
    });
    expect(plan.backports).toEqual([]);
    expect(plan.plain).toEqual(["qemu-system-x86", "gcc-aarch64-linux-gnu"]);
  });

  it("names a package for every tool", () => {
    for (const t of HOST_TOOLS) expect(t.pkg, t.id).toMatch(/^[a-z0-9.+-]+$/);
  });
});

describe("ensureHostTools (what kho run and kho test do first)", () => {
  const flex = HOST_TOOLS.find((t) => t.id === "flex");
  const present = HOST_TOOLS.map((tool) => ({ tool, version: "1.0" }));
  const missingFlex = HOST_TOOLS.map((tool) => ({ tool, version: tool === flex ? undefined : "1.0" }));

  it("without root: one sentence naming what is missing and the commands, exit 2, nothing installed", async () => {
    let installed = false;
    const err = await ensureHostTools(() => undefined, "kho run", {
      probe: () => Promise.resolve(missingFlex),
      install: () => {
        installed = true;
        return Promise.resolve();
      },
      isRoot: false,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HarnessError);
    const h = err as HarnessError;
    expect(h.message).toBe(
      "kho run needs host tools missing on this host (flex): run 'kho doctor --install' as root, or these commands:",
    );
    expect(h.exitCode).toBe(2);
    expect(h.evidence.join("\n")).toMatch(/apt-get install -y .*flex/);
    expect(installed).toBe(false);
  });

  it("as root: installs what is missing, says so, and goes on", async () => {
    const lines: string[] = [];
    let probes = 0;
    let plan: string[] = [];
    await ensureHostTools((l) => lines.push(l), "kho test", {
      probe: () => Promise.resolve(probes++ === 0 ? missingFlex : present),
      install: (p) => {
        plan = [...p.plain, ...p.backports];
        return Promise.resolve();
      },
      isRoot: true,
    });
    expect(plan).toEqual([flex?.pkg]);
    expect(lines[0]).toBe("# kho test needs flex: installing (kho doctor --install)");
    expect(probes).toBe(2);
  });

  it("as root, a tool still missing after the install is an error, not a run", async () => {
    const err = await ensureHostTools(() => undefined, "kho run", {
      probe: () => Promise.resolve(missingFlex),
      install: () => Promise.resolve(),
      isRoot: true,
    }).catch((e: unknown) => e);
    expect((err as HarnessError).message).toBe("installing flex left flex missing");
  });

  it("does nothing when every tool is there", async () => {
    await ensureHostTools(() => undefined, "kho run", {
      probe: () => Promise.resolve(present),
      install: () => Promise.reject(new Error("must not install")),
      isRoot: false,
    });
  });
});
