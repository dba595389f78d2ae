import { AgentInfoSchema } from "../agent/protocol.js";
import type { Scenario } from "../api/scenario.js";

/** The baseline: the same guest with kho=off must show no handover machinery at all. */
export const noKho: Scenario = {
  id: "no-kho",
  description: "booted with kho=off: no KHO debugfs, no /dev/liveupdate (the expected outcome)",
  needs: ["kho"],
  boot: { kho: false, append: "kho=off" },
  async run(ctx) {
    const info = await ctx.phase("checks", () =>
      ctx.agent("info", AgentInfoSchema, { artifact: "agent-info.json" }),
    );
    ctx.check(/\bkho=off\b/.test(info.cmdline), `the guest's command line lacks kho=off: ${info.cmdline}`);
    ctx.check(!info.liveupdate_dev, "/dev/liveupdate exists although KHO is off");
    const kho = await ctx.guest.exec("ls /sys/kernel/debug/kho");
    ctx.check(kho.code !== 0, "/sys/kernel/debug/kho exists although KHO is off", [kho.stdout]);
    const dmesg = await ctx.guest.run("dmesg");
    await ctx.artifact("dmesg-boot1.txt", dmesg);
    ctx.check(
      !/KHO: found kexec handover data/.test(dmesg),
      "a cold boot claims to have found handover data",
    );
    ctx.note("no handover data and no /dev/liveupdate, as expected with kho=off");
  },
};
