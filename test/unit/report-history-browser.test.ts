// history.html in a real browser: Debian's chromium, headless, driven over the DevTools protocol
// (--remote-debugging-pipe: JSON messages ending in NUL on file descriptors 3 and 4). It loads the
// page written for the history fixtures and checks the DOM after load, a screenshot, and every
// request the page made: only file: and data: URLs, nothing from the network. Installs nothing:
// without chromium the tests are skipped (`apt-get install chromium`; .ci/run installs it).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import { inflateSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHistory, writeHistory } from "../../src/report/history.js";
import { loadReport } from "../../src/report/schema.js";
import { VERDICT_COLOURS } from "../../src/report/svg.js";
import { findInPath } from "../../src/util/find-in-path.js";

const CHROMIUM = findInPath("chromium") ?? findInPath("chromium-browser");
const missing = CHROMIUM ? undefined : "chromium is not installed (apt-get install chromium)";
if (missing) console.log(`skipping the history page in a headless browser: ${missing}`);

const RUNS = [1, 2, 3, 4, 5].map((n) =>
  join(import.meta.dirname, "..", "fixtures", "reports", "history", `run-${n}`),
);
const WIDTH = 1280;
const HEIGHT = 900;
const TIMEOUT_MS = 20_000;

// --- A minimal DevTools protocol client over the pipe --------------------------------------------

interface CdpMessage {
  readonly id?: number;
  readonly method?: string;
  readonly params?: Record<string, unknown>;
  readonly result?: Record<string, unknown>;
  readonly error?: { readonly message: string };
  readonly sessionId?: string;
}

function within<T>(p: Promise<T>, what: string, ms = TIMEOUT_MS): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

class Browser {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: CdpMessage) => void }>();
  private readonly listeners: ((m: CdpMessage) => void)[] = [];
  private stderr = "";
  /** Why the browser cannot answer any more (it exited or never started). */
  private dead: string | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    private readonly toBrowser: Writable,
    fromBrowser: Readable,
  ) {
    let buffer = "";
    fromBrowser.setEncoding("utf8");
    fromBrowser.on("data", (chunk: string) => {
      buffer += chunk;
      for (let end = buffer.indexOf("\0"); end >= 0; end = buffer.indexOf("\0")) {
        const message = JSON.parse(buffer.slice(0, end)) as CdpMessage;
        buffer = buffer.slice(end + 1);
        const waiting = message.id === undefined ? undefined : this.pending.get(message.id);
        if (waiting && message.id !== undefined) {
          this.pending.delete(message.id);
          waiting.resolve(message);
        } else for (const l of [...this.listeners]) l(message);
      }
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (s: string) => (this.stderr = (this.stderr + s).slice(-4000)));
    // A browser that fails to start or dies answers every question still open with why.
    const gone = (why: string) => {
      this.dead ??= why;
      for (const [id, waiting] of this.pending) {
        this.pending.delete(id);
        waiting.resolve({ id, error: { message: `${why}; chromium said: ${this.stderr.slice(-300)}` } });
      }
    };
    child.once("error", (e) => gone(`chromium could not start: ${e.message}`));
    // A write to a browser that died fails (EPIPE): its exit, below, says why.
    toBrowser.on("error", () => undefined);
    this.exited = new Promise((resolve) =>
      child.once("close", (code, signal) => {
        gone(`chromium exited (${signal ?? `code ${code}`})`);
        resolve();
      }),
    );
  }

  static launch(binary: string, profile: string): Browser {
    const child = spawn(
      binary,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        `--window-size=${WIDTH},${HEIGHT}`,
        `--user-data-dir=${profile}`,
        "--remote-debugging-pipe",
        // Chromium's own traffic (updates, sign-in, time) off, and no name resolves: even a
        // request the page should not make stays on this machine.
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "about:blank",
      ],
      { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] },
    );
    const [, , , toBrowser, fromBrowser] = child.stdio;
    if (!toBrowser || !fromBrowser) throw new Error("chromium started without the debugging pipe");
    return new Browser(child, toBrowser as Writable, fromBrowser as Readable);
  }

  async send(method: string, params: object = {}, sessionId?: string): Promise<Record<string, unknown>> {
    if (this.dead) throw new Error(`${method}: ${this.dead}`);
    const id = ++this.nextId;
    const answer = new Promise<CdpMessage>((resolve) => this.pending.set(id, { resolve }));
    this.toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + "\0");
    const m = await within(answer, `${method} (chromium said: ${this.stderr.slice(-300)})`);
    if (m.error) throw new Error(`${method}: ${m.error.message}`);
    return m.result ?? {};
  }

  /** Calls `f` with every `method` event of the session, until the function it returns is called. */
  on(method: string, sessionId: string, f: (params: Record<string, unknown>) => void): () => void {
    const l = (m: CdpMessage) => {
      if (m.method === method && m.sessionId === sessionId) f(m.params ?? {});
    };
    this.listeners.push(l);
    return () => {
      const at = this.listeners.indexOf(l);
      if (at >= 0) this.listeners.splice(at, 1);
    };
  }

  async close(): Promise<void> {
    if (this.dead) return;
    await this.send("Browser.close").catch(() => undefined);
    await within(this.exited, "chromium exit", 5000).catch(() => {
      this.child.kill("SIGKILL");
    });
  }
}

interface DomFacts {
  readonly timelineRows: number;
  readonly kernelRows: number;
  readonly newFailureMarks: number;
  /** Every svg.phase-chart: its paths, whether it is shown (not in a closed <details>), its width. */
  readonly charts: readonly { paths: number; shown: boolean; width: number }[];
  /** What the page loaded, as the page itself saw it (Resource Timing). */
  readonly resources: readonly string[];
  readonly pageHeight: number;
}

const DOM_FACTS = `(() => {
  const t = document.getElementById("timeline");
  return {
    timelineRows: t ? t.querySelectorAll(":scope > tbody > tr").length : -1,
    kernelRows: t ? t.querySelectorAll(":scope > thead > tr.kernels").length : -1,
    newFailureMarks: document.querySelectorAll("#timeline td.cell.new").length,
    charts: [...document.querySelectorAll("svg.phase-chart")].map((s) => {
      const r = s.getBoundingClientRect();
      return { paths: s.querySelectorAll("path").length, shown: s.checkVisibility(), width: r.width };
    }),
    resources: performance.getEntriesByType("resource").map((e) => e.name),
    pageHeight: document.documentElement.scrollHeight,
  };
})()`;

interface Rendered {
  /** Every URL the page requested (the page itself included), in order. */
  readonly requests: readonly string[];
  readonly dom: DomFacts;
  /** The whole page, WIDTH wide. */
  readonly png: Buffer;
}

/** Opens `url` in a new tab, waits for load, reads the DOM facts and takes a full-page screenshot. */
async function render(browser: Browser, url: string): Promise<Rendered> {
  const { targetId } = await browser.send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = (await browser.send("Target.attachToTarget", { targetId, flatten: true })) as {
    sessionId: string;
  };
  const requests: string[] = [];
  const stop = browser.on("Network.requestWillBeSent", sessionId, (p) => {
    requests.push((p.request as { url: string }).url);
  });
  await browser.send("Network.enable", {}, sessionId);
  await browser.send("Page.enable", {}, sessionId);
  await browser.send(
    "Emulation.setDeviceMetricsOverride",
    { width: WIDTH, height: HEIGHT, deviceScaleFactor: 1, mobile: false },
    sessionId,
  );
  const loaded = new Promise<void>((resolve) => {
    const off = browser.on("Page.loadEventFired", sessionId, () => {
      off();
      resolve();
    });
  });
  const nav = await browser.send("Page.navigate", { url }, sessionId);
  if (typeof nav.errorText === "string") throw new Error(`${url}: ${nav.errorText}`);
  await within(loaded, `loading ${url}`);
  const evaluated = await browser.send(
    "Runtime.evaluate",
    { expression: DOM_FACTS, returnByValue: true },
    sessionId,
  );
  const dom = (evaluated.result as { value: DomFacts }).value;
  // The whole page: a viewport as tall as the page, then one screenshot of it.
  await browser.send(
    "Emulation.setDeviceMetricsOverride",
    { width: WIDTH, height: dom.pageHeight, deviceScaleFactor: 1, mobile: false },
    sessionId,
  );
  const shot = await browser.send("Page.captureScreenshot", { format: "png" }, sessionId);
  stop();
  await browser.send("Target.closeTarget", { targetId });
  return { requests, dom, png: Buffer.from(String(shot.data), "base64") };
}

/** The URLs that are not the page's own files (file:) or inline data (data:). */
const offMachine = (urls: readonly string[]) => urls.filter((u) => !/^(file|data):/.test(u));

// --- A small PNG reader (8-bit RGB/RGBA, not interlaced: what Chromium writes) -------------------

interface Png {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  /** Unfiltered pixels, row by row. */
  readonly pixels: Buffer;
}

function decodePng(png: Buffer): Png {
  expect(png.subarray(0, 8).toString("hex")).toBe("89504e470d0a1a0a");
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at);
    const type = png.toString("latin1", at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = data.subarray(8);
      expect({ depth, interlace }).toEqual({ depth: 8, interlace: 0 });
      channels = colour === 2 ? 3 : colour === 6 ? 4 : 0;
      expect(channels, `PNG colour type ${colour}`).toBeGreaterThan(0);
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  expect(raw.length).toBe(height * (stride + 1));
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const v = raw[y * (stride + 1) + 1 + x] ?? 0;
      const a = x >= channels ? (pixels[y * stride + x - channels] ?? 0) : 0;
      const b = y > 0 ? (pixels[(y - 1) * stride + x] ?? 0) : 0;
      const c = y > 0 && x >= channels ? (pixels[(y - 1) * stride + x - channels] ?? 0) : 0;
      let predictor: number;
      switch (filter) {
        case 0:
          predictor = 0;
          break;
        case 1:
          predictor = a;
          break;
        case 2:
          predictor = b;
          break;
        case 3:
          predictor = (a + b) >> 1;
          break;
        case 4: {
          const p = a + b - c;
          const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
          predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          throw new Error(`PNG filter ${filter} in row ${y}`);
      }
      pixels[y * stride + x] = (v + predictor) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

/** How many pixels have each colour ("#rrggbb"). */
function colourCounts(png: Png): Map<string, number> {
  const counts = new Map<string, number>();
  const byValue = new Map<number, number>();
  const p = png.pixels;
  for (let i = 0; i < p.length; i += png.channels) {
    const rgb = ((p[i] ?? 0) << 16) | ((p[i + 1] ?? 0) << 8) | (p[i + 2] ?? 0);
    byValue.set(rgb, (byValue.get(rgb) ?? 0) + 1);
  }
  for (const [rgb, n] of byValue) counts.set(`#${rgb.toString(16).padStart(6, "0")}`, n);
  return counts;
}

// --- The tests -----------------------------------------------------------------------------------

describe.skipIf(missing)("history.html in headless Chromium (apt-get install chromium)", () => {
  let dir: string;
  let browser: Browser;
  let html: string;
  let page: Rendered;
  const expectedRows = async () =>
    buildHistory(await Promise.all(RUNS.map(async (d) => ({ doc: (await loadReport(d)).doc, dir: d })))).rows
      .length;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kho-history-browser-"));
    const written = await writeHistory(RUNS, join(dir, "history"));
    html = await readFile(written.html, "utf8");
    browser = Browser.launch(CHROMIUM ?? "chromium", join(dir, "profile"));
    page = await render(browser, pathToFileURL(written.html).href);
    const keep = process.env.KHO_HISTORY_PNG;
    if (keep) await writeFile(keep, page.png);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("has the timeline, one row per scenario and arch, and a phase chart with lines per arch", async () => {
    expect(page.dom.timelineRows).toBe(await expectedRows());
    expect(page.dom.timelineRows).toBe(10);
    expect(page.dom.kernelRows).toBe(2);
    expect(page.dom.newFailureMarks).toBe(2);
    // The per-arch charts are on screen; the per-scenario ones wait in closed <details>.
    const shown = page.dom.charts.filter((c) => c.shown);
    expect(shown).toHaveLength(2);
    for (const c of shown) {
      expect(c.paths).toBeGreaterThan(0);
      expect(c.width).toBeGreaterThan(500);
    }
    expect(page.dom.charts.length).toBe(2 + 10);
  });

  it("screenshots as a real PNG of the page's size, with the timeline's and the chart's colours", () => {
    const png = decodePng(page.png);
    expect({ width: png.width, height: png.height }).toEqual({ width: WIDTH, height: page.dom.pageHeight });
    expect(png.height).toBeGreaterThan(HEIGHT);
    const counts = colourCounts(png);
    expect(counts.size).toBeGreaterThan(50);
    const [, most = 0] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0] ?? [];
    expect(most / (png.width * png.height)).toBeLessThan(0.95);
    // Timeline cells: solid blocks of the verdict colours; chart: the dots of the dashed total.
    expect(counts.get(VERDICT_COLOURS.pass) ?? 0).toBeGreaterThan(5000);
    expect(counts.get(VERDICT_COLOURS.fail) ?? 0).toBeGreaterThan(500);
    expect(counts.get(VERDICT_COLOURS.error) ?? 0).toBeGreaterThan(500);
    expect(counts.get("#333333") ?? 0).toBeGreaterThan(100);
  });

  it("requests nothing but its own file: nothing from the network", () => {
    expect(page.requests.length).toBeGreaterThan(0);
    expect(page.requests[0]).toMatch(/^file:\/\/.*\/history\.html$/);
    expect(offMachine(page.requests)).toEqual([]);
    expect(offMachine(page.dom.resources)).toEqual([]);
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?\/\//i);
    expect(html).not.toMatch(/url\(\s*["']?\s*(?:https?:)?\/\//i);
    expect(html).not.toMatch(/@import|<script|<link\b/i);
  });

  it("would see a page that fetches from the network (the check above can fail)", async () => {
    const control = join(dir, "control.html");
    await writeFile(
      control,
      '<!DOCTYPE html><html><body><img src="http://history-control.invalid/pixel.png"></body></html>\n',
    );
    const r = await render(browser, pathToFileURL(control).href);
    expect(offMachine(r.requests)).toEqual(["http://history-control.invalid/pixel.png"]);
  });
});
