import { describe, expect, test } from "vitest";
import {
  DEFAULT_DIRTY_RATE_MIBPS,
  dirtyRatePagesPerSecond,
  expectDirtyRateReached,
  GuestRateError,
  type MeasuredDirtyRate,
  pagesPerSecondToMiBps,
} from "./dirty-rate.ts";

function measured(mib: number): MeasuredDirtyRate {
  const bytesPerSecond = mib * 1024 * 1024;
  return {
    machine: "source",
    accel: "tcg",
    askedMiBps: 0,
    pagesPerSecond: bytesPerSecond / 4096,
    bytesPerSecond,
    mibPerSecond: mib,
    sampleMs: 1000,
    scheduleRestarts: 0,
  };
}

describe("dirty rate in MiB/s and pages per second", () => {
  test("1 MiB/s is 256 pages of 4 KiB per second; 0 is unpaced; fractions round to pages", () => {
    expect(dirtyRatePagesPerSecond(DEFAULT_DIRTY_RATE_MIBPS)).toBe(32 * 256);
    expect(dirtyRatePagesPerSecond(0)).toBe(0);
    expect(dirtyRatePagesPerSecond(0.5)).toBe(128);
    expect(dirtyRatePagesPerSecond(1 / 256)).toBe(1);
    expect(pagesPerSecondToMiBps(32768)).toBe(128);
  });

  test("nonsensical rates are RangeErrors naming the value", () => {
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, -0.5]) {
      expect(() => dirtyRatePagesPerSecond(bad)).toThrow(RangeError);
      expect(() => dirtyRatePagesPerSecond(bad)).toThrow(/finite number >= 0/);
    }
    // Bytes per second passed as MiB/s.
    expect(() => dirtyRatePagesPerSecond(32 * 1024 * 1024)).toThrow(/not bytes\/s/);
    expect(() => dirtyRatePagesPerSecond(0.001)).toThrow(/below one 4 KiB page per second/);
  });
});

describe("expectDirtyRateReached", () => {
  test("within the tolerance on either side passes", () => {
    expect(() => expectDirtyRateReached(32, measured(32))).not.toThrow();
    expect(() => expectDirtyRateReached(32, measured(27.5))).not.toThrow();
    expect(() => expectDirtyRateReached(32, measured(36.5))).not.toThrow();
    expect(() => expectDirtyRateReached(32, measured(20), 0.4)).not.toThrow();
  });

  test("a rate the guest could not reach is reported with the rate it reached and where", () => {
    let error: unknown;
    try {
      expectDirtyRateReached(4096, measured(310));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(GuestRateError);
    const e = error as GuestRateError;
    expect(e.message).toMatch(/^asked 4096 MiB\/s, the guest reached 310 MiB\/s on tcg/);
    expect(e.message).toContain("source");
    expect(e.askedMiBps).toBe(4096);
    expect(e.measured.mibPerSecond).toBe(310);
    expect(() => expectDirtyRateReached(32, measured(27))).toThrow(/reached 27\.0 MiB\/s/);
  });

  test("a guest faster than asked is a pacing failure", () => {
    expect(() => expectDirtyRateReached(8, measured(12))).toThrow(
      /asked 8\.00 MiB\/s, the guest dirtied 12\.0 MiB\/s on tcg .*faster than paced/,
    );
  });

  test("a tolerance outside [0, 1) is a RangeError", () => {
    expect(() => expectDirtyRateReached(8, measured(8), 1)).toThrow(RangeError);
    expect(() => expectDirtyRateReached(8, measured(8), -0.1)).toThrow(RangeError);
  });
});
