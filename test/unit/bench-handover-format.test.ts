// The report of `kho bench handover`: text, Markdown, the SVG chart and the HTML page, from a
// small made-up HandoverBenchReport (three sizes, two phases with data, one comparison).
import { describe, expect, it } from "vitest";
import type { ArchName } from "../../src/arch.js";
import {
  formatHandoverMarkdown,
  formatHandoverText,
  handoverChart,
  READING_NOTE,
  renderHandoverHtml,
  sizeLabel,
} from "../../src/bench/handover-format.js";
import {
  HANDOVER_BENCH_SCHEMA,
  type HandoverBenchReport,
  type HandoverFigures,
  type MemoryAtSize,
  type Spread,
} from "../../src/bench/handover-types.js";
import { assertBalancedXml } from "./helpers/report-asserts.js";

const MiB = 1024 * 1024;
const SIZES = [0, 256 * MiB, 1024 * MiB];

const spread = (median: number, min: number, max: number, n = 3): Spread => ({ n, median, min, max });

function memory(preservedPages: number): MemoryAtSize {
  return {
    preservedPages,
    radixPages: 3,
    luoPages: 5,
    scratchBytes: 64 * MiB,
    reservedKiBBefore: 81920,
    reservedKiBAfter: 82944,
    memTotalKiBAfter: 3977216,
  };
}

function figures(kernel: "A" | "B", scale: number, arch: ArchName = "x86_64"): HandoverFigures {
  return {
    arch,
    shape: "memfd",
    kernel,
    sizes: SIZES,
    phases: {
      "mm-init": [
        spread(40 * scale, 38, 44),
        spread(412 * scale, 405, 423),
        spread(1480 * scale, 1450, 1510),
      ],
      // No sample at 256 MiB: the table shows "-", the line goes from 0 to 1 GiB.
      userspace: [spread(2010, 1990, 2030), null, spread(2100, 2050, 2150)],
      shutdown: [null, null, null],
    },
    memory: [memory(0), memory(65536), memory(262144)],
    slopes: [
      {
        phase: "mm-init",
        msPerGiB: 1437.4,
        msPerMillionPages: 5483.2,
        interceptMs: 41.6,
        perRepeat: { min: 1402, median: 1440, max: 1475, n: 3 },
      },
    ],
  };
}

function report(over: Partial<HandoverBenchReport> = {}): HandoverBenchReport {
  return {
    schema: HANDOVER_BENCH_SCHEMA,
    host: "bench-host",
    cpus: 8,
    startedAt: "2026-12-05T21:36:50.230Z",
    wallMs: 3_600_000,
    repeat: 3,
    sizes: SIZES,
    shapes: ["memfd"],
    kernels: [
      { label: "A", spec: "default", images: [{ arch: "x86_64", image: "/k/a/bzImage", release: "7.2.13" }] },
      {
        label: "B",
        spec: "/src/linux-b/arch/x86/boot/bzImage",
        append: "kho_scratch=64M",
        images: [{ arch: "x86_64", image: "/k/b/bzImage", release: "7.2.14-rc1" }],
      },
    ],
    setup: [{ arch: "x86_64", accel: "tcg", memoryMiB: 4096 }],
    samples: [],
    figures: [figures("A", 1), figures("B", 1.1)],
    comparisons: [
      {
        arch: "x86_64",
        shape: "memfd",
        method: "bootstrap of the paired repeats, 2000 resamples",
        level: 0.975,
        minEffect: 0.02,
        phases: [
          { phase: "mm-init", ratio: 1.1, lo: 1.072, hi: 1.131, deltaMs: 12.5, p: 0.0004, verdict: "slower" },
          { phase: "userspace", ratio: 1.004, lo: 0.981, hi: 1.027, verdict: "no difference" },
        ],
      },
    ],
    failures: [
      {
        arch: "x86_64",
        kernel: "B",
        shape: "memfd",
        repeat: 2,
        reason: "no <ready> line after the kexec",
        artifacts: "out/bench/x86_64/b-memfd-2",
      },
    ],
    ...over,
  };
}

/** The text lines after the header line that starts with `header`, up to the next blank line. */
function block(text: string, header: string): string[] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.startsWith(header));
  expect(start, `no line starting ${header}`).toBeGreaterThanOrEqual(0);
  const end = lines.indexOf("", start);
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

const count = (text: string, re: RegExp) => [...text.matchAll(re)].length;

describe("sizes", () => {
  it("labels sizes in the unit that keeps them whole", () => {
    expect([0, 64 * MiB, 256 * MiB, 1024 * MiB, 1536 * MiB, 4096].map(sizeLabel)).toEqual([
      "0",
      "64 MiB",
      "256 MiB",
      "1 GiB",
      "1.5 GiB",
      "4 KiB",
    ]);
  });
});

describe("formatHandoverText", () => {
  const text = formatHandoverText(report());

  it("opens with the host, its CPUs, each arch's accelerator and the date, then the kernels", () => {
    const [caption, a, b] = text.split("\n");
    expect(caption).toBe(
      "Handover bench on bench-host (8 CPUs; x86_64 tcg, 4096 MiB guest), 2026-12-05 21:36:50 UTC",
    );
    expect(a).toBe("kernel A: default (x86_64 7.2.13)");
    expect(b).toBe(
      "kernel B: /src/linux-b/arch/x86/boot/bzImage (x86_64 7.2.14-rc1), appended parameters: kho_scratch=64M",
    );
  });

  it("has one row per size with each phase's median and half its min-max range", () => {
    const lines = block(text, "x86_64 memfd, kernel A (7.2.13, 3 repeats); ms, median ±half");
    const [head, ...rows] = lines;
    // Only the phases with data, in HANDOVER_PHASES order (mm-init before userspace); no shutdown.
    expect(head?.split(/\s{2,}/).filter(Boolean)).toEqual(["size", "mm-init", "userspace"]);
    const cells = (label: string) =>
      rows
        .find((r) => r.trim().startsWith(`${label} `))
        ?.trim()
        .split(/\s{2,}/);
    expect(cells("0")).toEqual(["0", "40 ±3", "2010 ±20"]);
    expect(cells("256 MiB")).toEqual(["256 MiB", "412 ±9", "-"]);
    expect(cells("1 GiB")).toEqual(["1 GiB", "1480 ±30", "2100 ±50"]);
  });

  it("shows the memory per size", () => {
    const lines = block(text, "x86_64 memfd, kernel A");
    const at = lines.findIndex((l) => l.includes("memory (medians)"));
    expect(lines[at + 1]?.trim().split(/\s{2,}/)).toEqual([
      "size",
      "preserved pages",
      "radix pages",
      "LUO pages",
      "scratch MiB",
      "reserved KiB before",
      "reserved KiB after",
      "MemTotal KiB after",
    ]);
    expect(lines[at + 3]?.trim().split(/\s+/)).toEqual([
      "256",
      "MiB",
      "65536",
      "3",
      "5",
      "64",
      "81920",
      "82944",
      "3977216",
    ]);
  });

  it("states each slope with the spread of the per-repeat fits", () => {
    expect(text).toContain(
      "    mm-init: 1437 ms/GiB (per repeat 1402-1475), 5483 ms per million pages, 42 ms at 0",
    );
  });

  it("gives the comparison's verdicts, interval and method", () => {
    const rows = block(text, "x86_64 memfd: kernel B against kernel A").map((l) => l.trim().split(/\s{2,}/));
    expect(rows[0]).toEqual(["phase", "ratio B/A", "interval", "B-A ms", "p", "verdict"]);
    expect(rows[1]).toEqual(["mm-init", "1.100", "1.072-1.131", "12.5", "0.00040", "slower"]);
    expect(rows[2]).toEqual(["userspace", "1.004", "0.981-1.027", "-", "-", "no difference"]);
    expect(text).toContain(
      "  method: bootstrap of the paired repeats, 2000 resamples; 97.5% intervals; minEffect 0.02 (a ratio within 1 ±2% counts as no difference)",
    );
  });

  it("lists the failures and ends with the reading note", () => {
    expect(block(text, "failures (1):")).toEqual([
      "  x86_64 memfd, kernel B, repeat 2: no <ready> line after the kexec (artifacts: out/bench/x86_64/b-memfd-2)",
    ]);
    expect(text.split("\n").slice(-4).join(" ")).toContain(READING_NOTE.slice(-60));
    expect(formatHandoverText(report({ failures: [] }))).not.toContain("failures");
  });
});

describe("formatHandoverMarkdown", () => {
  const markdown = formatHandoverMarkdown(report());

  it("has the caption and the same figures as tables", () => {
    expect(markdown.split("\n")[0]).toBe(
      "_Handover bench on bench-host (8 CPUs; x86_64 tcg, 4096 MiB guest), 2026-12-05 21:36:50 UTC_",
    );
    expect(markdown).toContain(
      "| size | mm-init | userspace |\n| --- | ---: | ---: |\n| 0 | 40 ±3 | 2010 ±20 |",
    );
    expect(markdown).toContain("| 256 MiB | 412 ±9 | - |");
    expect(markdown).toContain("| mm-init | 1.100 | 1.072-1.131 | 12.5 | 0.00040 | slower |");
    expect(markdown).toContain("| userspace | 1.004 | 0.981-1.027 | - | - | no difference |");
    expect(markdown).toContain("- mm-init: 1437 ms/GiB (per repeat 1402-1475)");
    expect(markdown).toContain("\nmethod: bootstrap of the paired repeats, 2000 resamples; 97.5% intervals;");
    // The failure's reason is escaped: no raw HTML reaches the page.
    expect(markdown).toContain("no &lt;ready&gt; line");
  });
});

describe("handoverChart", () => {
  it("is well-formed XML with one polyline and one whisker per point for each phase with data", () => {
    const svg = handoverChart(figures("A", 1));
    assertBalancedXml(svg);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" class="handover-chart" /);
    expect(count(svg, /<polyline /g)).toBe(2);
    // mm-init at three sizes, userspace at two.
    expect(count(svg, /class="whisker"/g)).toBe(5);
    expect(svg).not.toContain("stroke-dasharray");
    expect(svg).toContain("<title>x86_64 memfd: handover phases vs preserved size</title>");
    // Ticks at the sizes, labelled.
    expect(svg).toContain(">256 MiB</text>");
    expect(svg).toContain(">1 GiB</text>");
    // The whisker of mm-init at 1 GiB spans 1450 to 1510 ms: 1510 is above the median's point.
    const whiskers = [
      ...svg.matchAll(/class="whisker" x1="([\d.]+)" y1="([\d.]+)" x2="[\d.]+" y2="([\d.]+)"/g),
    ];
    for (const [, , y1, y2] of whiskers) expect(Number(y2)).toBeLessThanOrEqual(Number(y1));
  });

  it("draws B dashed in the same colours and names A and B in the legend", () => {
    const svg = handoverChart(figures("A", 1), { compare: figures("B", 1.1) });
    assertBalancedXml(svg);
    expect(count(svg, /<polyline /g)).toBe(4);
    expect(count(svg, /<polyline [^>]*stroke-dasharray/g)).toBe(2);
    expect(count(svg, /class="whisker"/g)).toBe(10);
    const colour = (kernel: string) =>
      [
        ...svg.matchAll(
          new RegExp(
            `data-phase="mm-init" data-kernel="${kernel}"><polyline [^>]*stroke="(#[0-9a-f]+)"`,
            "g",
          ),
        ),
      ].map((m) => m[1]);
    expect(colour("A")).toHaveLength(1);
    expect(colour("B")).toEqual(colour("A"));
    expect(svg).toContain('<text x="25" y="10">A</text>');
    expect(svg).toContain('<text x="25" y="10">B</text>');
  });

  it("draws only the phases asked for", () => {
    const svg = handoverChart(figures("A", 1), { phases: ["mm-init", "shutdown"] });
    expect(count(svg, /<polyline /g)).toBe(1);
    expect(svg).toContain('data-phase="mm-init"');
    expect(svg).not.toContain('data-phase="userspace"');
  });

  it("escapes its text", () => {
    const svg = handoverChart(figures("A", 1, "x86<&>" as ArchName));
    assertBalancedXml(svg);
    expect(svg).toContain("<title>x86&lt;&amp;&gt; memfd: handover phases vs preserved size</title>");
    expect(svg).not.toContain("x86<&>");
  });
});

describe("renderHandoverHtml", () => {
  const html = renderHandoverHtml(report());

  it("has both charts of the arch and shape, A against B", () => {
    const charts = [...html.matchAll(/<svg [^>]*class="handover-chart"[\s\S]*?<\/svg>/g)].map((m) => m[0]);
    expect(charts).toHaveLength(2);
    // Boot phases: mm-init, A solid and B dashed; userspace and the agent: userspace, likewise.
    expect(charts[0]).toContain('data-phase="mm-init" data-kernel="B"');
    expect(charts[0]).not.toContain('data-phase="userspace"');
    expect(charts[1]).toContain('data-phase="userspace" data-kernel="B"');
    for (const c of charts) assertBalancedXml(c);
  });

  it("loads nothing from anywhere", () => {
    const withoutNamespace = html.replaceAll('xmlns="http://www.w3.org/2000/svg"', "");
    expect(withoutNamespace).not.toMatch(/https?:/);
    expect(html).not.toMatch(/<(script|link|img|iframe)\b/);
  });

  it("colours the verdicts and escapes the failure", () => {
    expect(html).toMatch(/<span class="verdict" style="background:#c62828">slower<\/span>/);
    expect(html).toMatch(/<td><span class="verdict" style="background:#616161">no difference<\/span><\/td>/);
    expect(html).toContain("no &lt;ready&gt; line after the kexec");
    expect(html).not.toContain("<ready>");
    expect(html).toContain(READING_NOTE.replaceAll("'", "&#39;"));
    expect(html).toContain("<td>256 MiB</td><td>412 ±9</td><td>-</td>");
  });
});
