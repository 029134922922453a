import { describe, expect, test } from "vitest";
import { sampleRun } from "./fixture.ts";
import { downtimeText, renderReportHtml } from "./html.ts";

describe("renderReportHtml", () => {
  const html = renderReportHtml(sampleRun());

  test("self-contained: uPlot inlined, nothing loaded from anywhere", () => {
    expect(html).toMatch(/uPlot/);
    expect(html.length).toBeGreaterThan(40_000); // the library itself is in the file
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link[^>]+href=/i);
    expect(html).not.toMatch(/url\(\s*["']?https?:/i);
    expect(html).not.toMatch(/@import/);
  });

  test("embedded data cannot close its script element", () => {
    const data = /<script id="report-data" type="application\/json">([\s\S]*?)<\/script>/.exec(
      html,
    );
    expect(data?.[1]).toBeDefined();
    expect(data?.[1]).not.toMatch(/<\//);
    expect(JSON.parse(data?.[1] ?? "").series.t).toHaveLength(5);
    // The run name is escaped as text in the page.
    expect(html).toContain("sample &lt;/script&gt; run");
  });

  test("both sides' final QMP and HMP, verdicts, and the RAM check (not run when absent)", () => {
    expect(html).toContain("Migration status: completed");
    expect(html).toContain("&quot;normal-bytes&quot;: 409600");
    expect(html).toContain("PASS both sides completed");
    expect(html).toMatch(/id="ram-check">not run</);
    const run = sampleRun();
    run.ramCheck = { ok: false, summary: "RAM check FAILED: 3 bad of 256 pages" };
    expect(renderReportHtml(run)).toMatch(/class="bad" id="ram-check">RAM check FAILED: 3 bad/);
  });

  test("a chart div for each series family", () => {
    for (const id of ["remaining", "throughput", "dirty-rate", "downtime"]) {
      expect(html).toContain(`id="chart-${id}"`);
    }
  });

  test("downtime: QEMU's figure, and the guest-visible stretch when it was sampled", () => {
    const run = sampleRun();
    expect(html).toMatch(/id="downtime">QEMU 20 ms \(guest-visible: not sampled\)</);
    run.guestDowntime = {
      stretchMs: 25.04,
      resolutionMs: 1.2,
      guestClockMs: 0.61,
      qemuDowntimeMs: 28,
    };
    expect(downtimeText(run)).toBe(
      "QEMU 28 ms; guest-visible 25.0 ms (+-1.2), the guest's clock advanced 0.61 ms across it",
    );
  });
});
