// The scenarios of issue 5 (items 3-5), in the order `kho run` runs them: memfd shapes, session
// lifecycle edges, a hugetlb memfd, and a reserve_mem region.
import { hugetlbMemfd } from "./hugetlb-memfd.js";
import { MEMFD_LIFECYCLE } from "./memfd-lifecycle.js";
import { MEMFD_SHAPES } from "./memfd-variants.js";
import { reserveMem } from "./reserve-mem.js";
import type { Scenario } from "../api/scenario.js";

export const VARIANT_SCENARIOS: readonly Scenario[] = [
  ...MEMFD_SHAPES,
  ...MEMFD_LIFECYCLE,
  hugetlbMemfd,
  reserveMem,
];
