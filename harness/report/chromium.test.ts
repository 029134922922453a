// The HTML report of a real migration, opened in real headless Chromium: every chart drew (the
// page says so, and its series' colours are on the screenshot inside each plot area), and the
// page raised no error. The screenshot is kept in the results folder.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, inject, test } from "vitest";
import { runMigrate } from "../cli/migrate.ts";
import { chromiumMissing, countColorPixels, viewInChromium } from "./chromium.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const missing = chromiumMissing();
const binary = inject("binaries")[0];

describe("HTML report in headless Chromium", () => {
  test.skipIf(missing !== undefined || binary === undefined)(
    `a real run's report draws every chart with no page error${missing ? ` (skipped: ${missing})` : ""}${binary ? ` [${binary.label}, ${binary.arch}, ${binary.accel}]` : " (skipped: no QEMU binary under test)"}`,
    // A browser and a whole migration (7 s): nightly (full) only.
    { tags: ["full"], timeout: 180_000 },
    async ({ annotate }) => {
      if (!binary) return;
      const results = join(
        process.env.QEMU_MIGTEST_RESULTS ?? join(REPO, "results"),
        "report-test",
      );
      mkdirSync(results, { recursive: true });
      // Bandwidth-limited (28.6 MiB/s) with the guest paced in time at 8 MiB/s, the same on any
      // host: ~3.5 s for the first pass, then passes a quarter the size before the one that fits
      // the 300 ms downtime limit, so the charts have a few seconds of points and several passes.
      const outcome = await runMigrate(
        {
          sourceBinary: binary.path,
          destinationBinary: binary.path,
          accel: binary.accelRequest,
          guest: "bootblock",
          transport: "tcp",
          memoryMiB: 128,
          capabilities: {},
          parameters: { "downtime-limit": 300 },
          sourceParameters: { "max-bandwidth": 30_000_000 },
          dirtyRateMiBps: 8,
          pageSpin: 0,
          timeoutMs: 90_000,
          resultsDir: results,
          progress: "none",
          keepGoing: false,
        },
        { write: () => undefined },
      );
      expect(
        outcome.ok,
        `the migration behind the report:\n${JSON.stringify(outcome.run.verdicts)}\n${outcome.run.outcome.error ?? ""}`,
      ).toBe(true);
      const html = outcome.files.report;
      expect(html, "report file written").toBeDefined();
      if (!html) return;
      const png = join(results, "report.png");
      const view = await viewInChromium(html, png);
      console.log(`report screenshot: ${png}\nreport: ${html}`);
      await annotate(`report screenshot: ${png}`);

      expect(view.state.errors, "errors raised in the report page").toEqual([]);
      expect(view.uncaught, "Uncaught errors Chromium logged").toEqual([]);
      expect(view.state.charts.map((c) => c.id)).toEqual([
        "remaining",
        "throughput",
        "dirty-rate",
        "downtime",
      ]);
      for (const chart of view.state.charts) {
        expect(chart.empty, `${chart.id}: has data`).toBe(false);
        expect(chart.draws, `${chart.id}: uPlot drew`).toBeGreaterThanOrEqual(1);
        expect(chart.rect, `${chart.id}: plot area`).toBeDefined();
        if (!chart.rect) continue;
        expect(
          chart.rect.y + chart.rect.height,
          `${chart.id} is inside the screenshot`,
        ).toBeLessThanOrEqual(view.screenshot.height);
        for (const color of chart.colors) {
          const pixels = countColorPixels(view.screenshot, chart.rect, color);
          // A 2 px line across a 1100 px plot is thousands of pixels; a blank plot has none.
          expect(
            pixels,
            `${chart.id}: pixels of series colour ${color} in its plot area`,
          ).toBeGreaterThan(200);
        }
      }
      // The counter itself discriminates: the black page heading holds none of the coloured
      // series (the grey downtime-limit line is left out: it is close to text colour).
      const heading = { x: 0, y: 0, width: view.screenshot.width, height: 40 };
      for (const chart of view.state.charts) {
        const color = chart.colors[0] ?? "";
        expect(countColorPixels(view.screenshot, heading, color), `${color} in the heading`).toBe(
          0,
        );
      }
    },
  );
});
