import { describe, expect, test } from "vitest";
import { MiB } from "../util/units.ts";
import { sampleRun } from "./fixture.ts";
import { DEFAULT_DOWNTIME_LIMIT_MS, reportSeries } from "./series.ts";

describe("reportSeries", () => {
  test("one point per source snapshot instant, in seconds, destination ignored", () => {
    const s = reportSeries(sampleRun());
    // 200 and 202 are two instants; the destination's 2300 snapshot is not a point.
    expect(s.t).toEqual([0.2, 0.202, 1.2, 2.2, 3]);
    expect(s.ramRemaining).toEqual([100 * MiB, 99 * MiB, 40 * MiB, 5 * MiB, 0]);
    expect(s.mbps).toEqual([800, 800, 900, 950, 960]);
    expect(s.dirtyPagesRate).toEqual([0, 0, 5000, 3000, 0]);
    expect(s.expectedDowntime).toEqual([300, 300, 450, 120, null]);
    expect(s.end).toBe(3.05);
  });

  test("system-wide remaining only when QEMU reports it", () => {
    expect(reportSeries(sampleRun()).hasSystemRemaining).toBe(false);
    const s = reportSeries(sampleRun({ systemRemaining: true }));
    expect(s.hasSystemRemaining).toBe(true);
    expect(s.systemRemaining.slice(0, 2)).toEqual([100 * MiB + 4096, 99 * MiB + 4096]);
    expect(s.systemRemaining.at(-1)).toBeNull();
  });

  test("pass markers from MIGRATION_PASS, status bands from events and snapshots", () => {
    const s = reportSeries(sampleRun());
    expect(s.passes).toEqual([
      { t: 0.15, pass: 1 },
      { t: 1.3, pass: 2 },
    ]);
    expect(s.statusBands).toEqual([
      { status: "setup", from: 0.1, to: 0.2 },
      { status: "active", from: 0.2, to: 3 },
      { status: "completed", from: 3, to: 3.05 },
    ]);
  });

  test("the downtime limit is the source's parameter, else QEMU's default", () => {
    const run = sampleRun();
    expect(reportSeries(run).downtimeLimitMs).toBe(250);
    delete run.sides.source.parameters;
    expect(reportSeries(run).downtimeLimitMs).toBe(DEFAULT_DOWNTIME_LIMIT_MS);
  });
});
