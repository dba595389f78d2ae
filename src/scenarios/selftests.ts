// The kernel's own liveupdate selftests (tools/testing/selftests/liveupdate/) as scenarios:
// built from the tree of the kernel under test, uploaded to the guest, and for the two-stage
// ones: stage 1, kexec with KHO, stage 2 (`-s 2`) in the new kernel, each stage judged from its
// KTAP output and exit code.
import { kexecWithAgent } from "./kexec-step.js";
import type { ScenarioContext } from "../api/context.js";
import { buildLiveupdateSelftests, type SelftestBinaries } from "../selftests/liveupdate.js";
import { judgeSelftestRun, LIVEUPDATE_SELFTESTS, type SelftestSpec } from "../selftests/liveupdate-specs.js";
import type { Scenario } from "../api/scenario.js";
import { HarnessError } from "../errors.js";

/** In /root: the guest's /usr is the next-kernel disk's, read-only (src/image/initramfs.ts). */
const GUEST_DIR = "/root/kselftest/liveupdate";
/** Binaries are built once per kernel and arch, whatever the number of tests. */
const builds = new Map<string, Promise<SelftestBinaries>>();

async function binaryFor(ctx: ScenarioContext, spec: SelftestSpec): Promise<string> {
  const kernel = ctx.kernel.built;
  if (!kernel) {
    ctx.skip(
      "the selftests are built from the kernel's own tree: boot a kernel the harness built (no --kernel)",
    );
  }
  let b = builds.get(kernel.manifest.key);
  if (!b) {
    b = buildLiveupdateSelftests(kernel);
    builds.set(kernel.manifest.key, b);
  }
  const path = (await ctx.phase("build", () => b)).binaries[spec.name];
  const remote = `${GUEST_DIR}/${spec.binary}`;
  await ctx.guest.run(`mkdir -p ${GUEST_DIR}`);
  await ctx.guest.upload(path, remote);
  return remote;
}

/** Runs one stage with stdout and stderr merged, keeps its output, and judges it. */
async function stage(ctx: ScenarioContext, spec: SelftestSpec, n: 1 | 2, command: string): Promise<void> {
  const r = await ctx.phase(`stage${n}`, () => ctx.guest.exec(`cd / && ${command} </dev/null 2>&1`, 300_000));
  await ctx.artifact(`stage${n}.txt`, r.stdout);
  const verdict = judgeSelftestRun(spec, n, { exitCode: r.code, output: r.stdout });
  if (verdict.status === "skip") ctx.skip(verdict.reason);
  ctx.check(verdict.status === "pass", verdict.reason, r.stdout.trimEnd().split("\n").slice(-20));
  ctx.note(verdict.reason);
}

function selftestScenario(spec: SelftestSpec): Scenario {
  return {
    id: `selftest-${spec.name}`,
    description: `kernel selftest ${spec.binary}: ${spec.summary}`,
    needs: ["kho", "luo"],
    boot: { kho: true },
    async run(ctx) {
      const bin = await binaryFor(ctx, spec);
      await stage(ctx, spec, 1, [bin, ...(spec.twoStage ? spec.stage1.args : spec.run.args)].join(" "));
      if (!spec.twoStage) return;
      await kexecWithAgent(ctx);
      // The new kernel boots a fresh initramfs: the binary has to be uploaded again.
      await binaryFor(ctx, spec);
      await stage(ctx, spec, 2, [bin, ...spec.stage2.args].join(" "));
    },
  };
}

export const SELFTEST_SCENARIOS: readonly Scenario[] = LIVEUPDATE_SELFTESTS.map(selftestScenario);

/** The selftests named (comma-separated, without the `selftest-` prefix), or all of them. */
export function selectSelftests(list: string | undefined): Scenario[] {
  if (!list) return [...SELFTEST_SCENARIOS];
  const names = list.split(",").map((t) => t.trim());
  const known = SELFTEST_SCENARIOS.map((s) => s.id.replace(/^selftest-/, ""));
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length)
    throw new HarnessError(`unknown selftest ${unknown.join(", ")} (known: ${known.join(", ")})`);
  return SELFTEST_SCENARIOS.filter((s) => names.includes(s.id.replace(/^selftest-/, "")));
}
