import { describe, expect, it } from "vitest";
import { installCommands, planInstall } from "../../src/host/install.js";
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
