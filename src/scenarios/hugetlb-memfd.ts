// A MFD_HUGETLB memfd through LUO. luo_preserve_file() asks every registered file handler's
// can_preserve(); memfd_luo's accepts shmem files only (shmem_file() && !i_nlink), so unless the
// kernel has a handler for hugetlbfs files, PRESERVE_FD fails with ENOENT ("no compatible
// handler"). That is a skip naming the errno and the missing handler; a kernel that preserves
// it gets the same checks as any memfd (contents, frames, huge folios).
import { isAgentError } from "../agent/protocol.js";
import type { ScenarioContext } from "../api/context.js";
import { CheckFailed } from "../api/outcome.js";
import {
  checkPreserved,
  checkRestored,
  kexecHeldNoted,
  restoreSessions,
  startHolding,
} from "./memfd-common.js";
import { seeded, sessionArgs } from "../agent/memfd-args.js";
import { findMemfd } from "../checks/memfd.js";
import type { Scenario } from "../api/scenario.js";

const SESSION = "kho-hugetlb-memfd";
const HUGEPAGES = 16;

/**
 * The one refusal the kernel's source predicts: ENOENT while no LUO file handler accepts
 * hugetlbfs files. Only that one is a skip; any other errno is a failure.
 */
const NO_HANDLER = "ENOENT";

function refusal(errname: string, errno: number): string {
  return `the kernel refused PRESERVE_FD of a MFD_HUGETLB memfd with ${errname} (errno ${errno})`;
}

async function hugePageKiB(ctx: ScenarioContext): Promise<{ total: number; sizeKiB: number }> {
  const info = await ctx.guest.run("grep -E '^(HugePages_Total|Hugepagesize):' /proc/meminfo");
  const field = (name: string) => Number(new RegExp(`${name}:\\s*(\\d+)`).exec(info)?.[1] ?? 0);
  return { total: field("HugePages_Total"), sizeKiB: field("Hugepagesize") };
}

export const hugetlbMemfd: Scenario = {
  id: "hugetlb-memfd",
  description: `a MFD_HUGETLB memfd of two huge pages (hugepages=${HUGEPAGES} reserved at boot) through LUO: preserved in place like any memfd, or a skip naming the errno and the missing handler`,
  needs: ["kho", "luo", "luo-memfd", "hugetlbfs"],
  boot: { kho: true, append: `hugepages=${HUGEPAGES}` },
  // The huge page pool is the only one; no other scenario takes from it.
  shareable: true,
  async run(ctx) {
    const { total, sizeKiB } = await hugePageKiB(ctx);
    if (total < 2 || sizeKiB === 0)
      ctx.skip(
        `the guest could not reserve huge pages (HugePages_Total ${total}, Hugepagesize ${sizeKiB} kB)`,
      );
    const size = 2 * sizeKiB * 1024;
    const sessions = seeded([{ name: SESSION, memfds: [{ token: 1, size, hugetlb: true, try: true }] }]);
    const held = await ctx.phase("preserve", () =>
      startHolding(ctx, `preserve ${sessionArgs(sessions)}`, "agent-preserve.json"),
    );
    if (isAgentError(held.result))
      throw new CheckFailed(`the agent could not set up the hugetlb memfd: ${held.result.error}`, [
        JSON.stringify(held.result),
      ]);
    const before = held.result;
    const pre = findMemfd(before, SESSION, 1);
    const error = pre?.preserve_error;
    if (error) {
      held.stream.writeLine("abort");
      await held.stream.done;
      ctx.check(
        error.errname === NO_HANDLER,
        `${refusal(error.errname, error.errno)}: only ${NO_HANDLER} (no handler for hugetlbfs files) is expected`,
        [JSON.stringify(pre)],
      );
      ctx.check(
        !ctx.kernel.features.has("luo-hugetlb"),
        `${refusal(error.errname, error.errno)}, although the kernel's source registers a LUO handler for hugetlbfs files`,
        [JSON.stringify(pre)],
      );
      ctx.fact({ kind: "errno", operation: "PRESERVE_FD", errname: error.errname });
      ctx.skip(
        `${refusal(error.errname, error.errno)}: no registered LUO file handler can preserve a hugetlbfs file (luo_preserve_file() found no handler whose can_preserve() accepts it; memfd_luo_can_preserve() takes shmem files only), so this kernel lacks hugetlb memfd preservation`,
      );
    }
    await checkPreserved(ctx, sessions, before);
    ctx.check(
      (pre?.kpageflags?.huge ?? 0) === pre?.pages,
      `the memfd's pages are not huge pages (${pre?.kpageflags?.huge ?? "?"} of ${pre?.pages})`,
    );
    await kexecHeldNoted(ctx, held.stream);
    const after = await restoreSessions(ctx, sessions);
    await ctx.phase("checks", () => {
      const { frames } = checkRestored(ctx, sessions, before, after);
      const post = findMemfd(after, SESSION, 1);
      ctx.check(
        post?.kpageflags?.huge === pre?.kpageflags?.huge,
        "the restored memfd is not on huge pages any more",
      );
      ctx.note(`${size / 1048576} MiB of huge pages: same bytes, ${frames} frames identical`);
      return Promise.resolve();
    });
  },
};
