// Every scenario, in the order `kho run` runs them.
import picomatch from "picomatch";
import { HarnessError } from "../errors.js";
import { chainMemfd } from "./chain.js";
import { pagesNextMaxOrder } from "./max-order.js";
import { kexecTraffic } from "./kexec-traffic.js";
import { memfdBasic } from "./memfd-basic.js";
import { noKho } from "./no-kho.js";
import { NUMA_SCENARIOS } from "./numa.js";
import { PAGE_SCENARIOS } from "./pages.js";
import { testKho } from "./test-kho.js";
import type { Scenario } from "../api/scenario.js";
import { VARIANT_SCENARIOS } from "./variants.js";
import { RACE_SCENARIOS } from "./luo-races.js";

export const SCENARIOS: readonly Scenario[] = [
  testKho,
  memfdBasic,
  ...VARIANT_SCENARIOS,
  noKho,
  ...PAGE_SCENARIOS,
  ...NUMA_SCENARIOS,
  ...RACE_SCENARIOS,
  pagesNextMaxOrder,
  chainMemfd,
  kexecTraffic,
];

/** Scenarios matching any of the comma-separated ids or globs ("memfd-*"), in suite order. */
export function selectScenarios(
  patterns: string | undefined,
  from: readonly Scenario[] = SCENARIOS,
  what = "scenario",
): Scenario[] {
  if (!patterns) return [...from];
  const wanted = patterns
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  const unknown = wanted.filter((p) => !from.some((s) => picomatch.isMatch(s.id, p)));
  if (unknown.length > 0) {
    throw new HarnessError(
      `no ${what} matches ${unknown.map((u) => `"${u}"`).join(", ")} (known: ${from.map((s) => s.id).join(", ")})`,
    );
  }
  return from.filter((s) => wanted.some((p) => picomatch.isMatch(s.id, p)));
}
