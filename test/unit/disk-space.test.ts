import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HarnessError } from "../../src/errors.js";
import { diskFullMessage, freeMiB, isDiskFull, requireFreeSpace } from "../../src/host/disk-space.js";

describe("free space where the harness writes", () => {
  it("is measured on the nearest existing folder of a path not made yet", async () => {
    const here = await freeMiB(tmpdir());
    const deep = await freeMiB(join(tmpdir(), "kho-not-made", "a", "b"));
    expect(here).toBeGreaterThan(0);
    expect(Math.abs(deep - here)).toBeLessThan(64);
  });

  it("refuses a need the filesystem cannot meet, naming the path, what is free and what is needed", async () => {
    const free = await freeMiB(tmpdir());
    const err = await requireFreeSpace(
      [{ path: tmpdir(), mib: free + 1_000_000, what: "the test's files" }],
      "this test",
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HarnessError);
    expect((err as HarnessError).message).toMatch(
      new RegExp(
        `^only \\d+ MiB free for the test's files at ${tmpdir()}, this test needs ${free + 1_000_000} MiB there: free some space or point it elsewhere$`,
      ),
    );
    await expect(
      requireFreeSpace([{ path: tmpdir(), mib: 1, what: "x" }], "this test"),
    ).resolves.toBeUndefined();
  });

  it("tells a write that failed for want of space from other failures", async () => {
    const full = Object.assign(new Error("ENOSPC: no space left on device, write"), {
      code: "ENOSPC",
      path: join(tmpdir(), "x.txt"),
    });
    expect(isDiskFull(full)).toBe(true);
    expect(isDiskFull(Object.assign(new Error("x"), { code: "EDQUOT" }))).toBe(true);
    expect(isDiskFull(Object.assign(new Error("x"), { code: "ENOENT" }))).toBe(false);
    expect(isDiskFull(undefined)).toBe(false);
    expect(await diskFullMessage(full)).toMatch(
      new RegExp(
        `^no space left on the device writing ${tmpdir()}/x\\.txt \\(\\d+ MiB free there now\\) \\(ENOSPC\\)$`,
      ),
    );
  });
});
