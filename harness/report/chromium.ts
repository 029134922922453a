// Opens a report in Debian's headless Chromium, the way a person would look at it: once to read
// what the page says it drew (body[data-report], after its scripts ran) and once for a
// screenshot; then counts pixels of each series' colour inside each chart's plot area.

import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { execa } from "execa";
import { PNG } from "pngjs";
import type { ReportPageState } from "./html.ts";

const CHROMIUM = "/usr/bin/chromium";
const WINDOW = { width: 1280, height: 2000 };

/** Why Chromium cannot be used here, or undefined when it can. */
export function chromiumMissing(path = CHROMIUM): string | undefined {
  return existsSync(path)
    ? undefined
    : `${path} is not installed (apt-get install chromium, or scripts/setup as root)`;
}

/** Flags for a closed network and a throwaway profile (see the machine notes in README). */
function flags(profile: string): string[] {
  return [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    `--user-data-dir=${profile}`,
    `--window-size=${WINDOW.width},${WINDOW.height}`,
    "--enable-logging=stderr",
    "--v=0",
  ];
}

export interface ChromiumView {
  state: ReportPageState;
  /** Page errors Chromium logged ("Uncaught ..." console lines). */
  uncaught: string[];
  screenshot: PNG;
}

export async function viewInChromium(
  htmlPath: string,
  screenshotPath: string,
): Promise<ChromiumView> {
  const url = pathToFileURL(htmlPath).href;
  const run = async (extra: string[]) => {
    // A fresh profile per start: nothing carried over between runs or from the user.
    const profile = await mkdtemp(join(tmpdir(), "qmt-chromium-"));
    try {
      const r = await execa(CHROMIUM, [...flags(profile), ...extra, url], {
        timeout: 60_000,
        reject: false,
        stdin: "ignore",
      });
      if (r.exitCode !== 0) {
        throw new Error(
          `chromium ${extra.join(" ")} failed (${r.timedOut ? "timed out after 60 s" : `exit ${r.exitCode}`}):\n${r.stderr.slice(-2000)}`,
        );
      }
      return r;
    } finally {
      await rm(profile, { recursive: true, force: true });
    }
  };
  const dom = await run(["--virtual-time-budget=5000", "--dump-dom"]);
  const shot = await run([`--screenshot=${screenshotPath}`]);
  const attr = /data-report="([^"]*)"/.exec(dom.stdout)?.[1];
  if (attr === undefined) {
    throw new Error(
      `the report page never published its state (no body[data-report]): its script did not run to the end\n${dom.stdout.slice(0, 500)}`,
    );
  }
  const state = JSON.parse(unescapeHtml(attr)) as ReportPageState;
  const uncaught = `${dom.stderr}\n${shot.stderr}`.split("\n").filter((l) => /Uncaught/.test(l));
  const screenshot = PNG.sync.read(await readFile(screenshotPath));
  return { state, uncaught, screenshot };
}

function unescapeHtml(text: string): string {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Pixels inside `rect` within `tolerance` (per channel) of `hex` ("#1f6feb"). */
export function countColorPixels(png: PNG, rect: Rect, hex: string, tolerance = 40): number {
  const want = [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));
  const x0 = Math.max(0, Math.floor(rect.x));
  const y0 = Math.max(0, Math.floor(rect.y));
  const x1 = Math.min(png.width, Math.ceil(rect.x + rect.width));
  const y1 = Math.min(png.height, Math.ceil(rect.y + rect.height));
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = (y * png.width + x) * 4;
      if (
        Math.abs((png.data[i] ?? 0) - (want[0] ?? 0)) <= tolerance &&
        Math.abs((png.data[i + 1] ?? 0) - (want[1] ?? 0)) <= tolerance &&
        Math.abs((png.data[i + 2] ?? 0) - (want[2] ?? 0)) <= tolerance
      ) {
        n++;
      }
    }
  }
  return n;
}
