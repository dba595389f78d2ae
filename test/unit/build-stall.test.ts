// The build's stall deadline: a make that prints nothing for the limit is killed with its whole
// process group and fails in one sentence with the log's last lines; one that keeps printing
// runs on. Real make and bash on a two-rule Makefile.
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { archSpec } from "../../src/arch.js";
import { HarnessError } from "../../src/errors.js";
import { makeRunner } from "../../src/kernel/build.js";
import { findInPath } from "../../src/util/find-in-path.js";

let dir: string;
const quiet = () => undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kho-stall-"));
  // `silent` starts a grandchild that would outlive a make killed alone, and then says nothing
  await writeFile(
    join(dir, "Makefile"),
    [
      "silent:",
      "\t@echo starting; sleep 60 & echo $$! > $(O)/grandchild; sleep 60; echo never",
      // a generated file written in two steps, as the kernel's perl-made sha256-core.S is
      "half.S:",
      "\t@echo writing; printf '' > $@; sleep 60; echo done > $@",
      "chatty:",
      "\t@for i in 1 2 3 4 5 6; do echo step $$i; sleep 0.5; done",
      "",
    ].join("\n"),
  );
});

afterAll(() => rm(dir, { recursive: true, force: true }));

describe.skipIf(!findInPath("make"))("a build that stalls", () => {
  it("is stopped after the limit with the log's tail, its process group gone", async () => {
    const make = makeRunner(
      dir,
      dir,
      archSpec("x86_64"),
      join(dir, "build.log"),
      quiet,
      () => Promise.resolve(),
      1_500,
    );
    const started = performance.now();
    const err = await make.run(["silent"], "build").catch((e: unknown) => e);
    const ms = performance.now() - started;
    expect(err).toBeInstanceOf(HarnessError);
    expect((err as HarnessError).message).toMatch(
      /^make build for x86_64 printed nothing for 1\.5s and was stopped \(a stuck build/,
    );
    expect((err as HarnessError).evidence).toContain("starting");
    expect(ms).toBeGreaterThanOrEqual(1_400);
    expect(ms).toBeLessThan(10_000);
    const grandchild = Number(await readFile(join(dir, "grandchild"), "utf8"));
    // gone, or a zombie waiting for whoever inherited it to reap it
    const running = () => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${grandchild}/stat`, "utf8"));
      } catch {
        return false; // gone
      }
    };
    for (let i = 0; i < 20 && running(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(running()).toBe(false);
  });

  it("stops make so that it deletes the target it was writing (a SIGKILL left it empty, and the next build linked it)", async () => {
    const make = makeRunner(
      dir,
      dir,
      archSpec("x86_64"),
      join(dir, "build3.log"),
      quiet,
      () => Promise.resolve(),
      1_500,
    );
    const err = await make.run(["half.S"], "build").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HarnessError);
    expect(existsSync(join(dir, "half.S"))).toBe(false);
  });

  it("lets a build that keeps printing run longer than the limit", async () => {
    const make = makeRunner(
      dir,
      dir,
      archSpec("x86_64"),
      join(dir, "build2.log"),
      quiet,
      () => Promise.resolve(),
      1_500,
    );
    await expect(make.run(["chatty"], "build")).resolves.toBeUndefined();
    expect(make.cpuSeconds()).toBeGreaterThanOrEqual(0);
  });
});
