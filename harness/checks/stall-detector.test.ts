import { describe, expect, test } from "vitest";
import { MiB } from "../util/units.ts";
import { detectStall, type PassSample } from "./stall-detector.ts";

const s = (pass: number, remaining: number, ramRemaining?: number): PassSample => ({
  pass,
  remaining,
  ...(ramRemaining === undefined ? {} : { ramRemaining }),
});

describe("detectStall", () => {
  test("flat remaining over N passes is a stall", () => {
    const v = detectStall([s(1, 100 * MiB), s(2, 101 * MiB), s(3, 100 * MiB), s(4, 100 * MiB)], {
      passes: 3,
    });
    expect(v.stalled).toBe(true);
    expect(v.reason).toMatch(/not converging: remaining was 104857600 bytes at pass 1/);
  });

  test("a falling remaining is not", () => {
    const v = detectStall([s(1, 100 * MiB), s(2, 25 * MiB), s(3, 6 * MiB), s(4, 2 * MiB)], {
      passes: 3,
    });
    expect(v.stalled).toBe(false);
    expect(v.reason).toMatch(/converging/);
  });

  test("too few samples: no verdict", () => {
    expect(detectStall([s(1, 5), s(2, 5)], { passes: 3 }).stalled).toBe(false);
  });

  test("a stale zero (RAM still dirty) is not progress", () => {
    const v = detectStall(
      [s(1, 100 * MiB), s(2, 0, 111 * MiB), s(3, 100 * MiB), s(4, 100 * MiB), s(5, 100 * MiB)],
      { passes: 3 },
    );
    expect(v.samples.map((x) => x.pass)).toEqual([1, 3, 4, 5]);
    expect(v.stalled).toBe(true);
  });

  test("a zero with a few pages still dirty counts: that is convergence, not the blind spot", () => {
    const v = detectStall(
      [s(2, 14 * MiB, 13 * MiB), s(3, 4 * MiB, 2 * MiB), s(4, 0, 16384), s(5, 0, 16384)],
      {
        passes: 2,
      },
    );
    expect(v.samples.map((x) => x.pass)).toEqual([2, 3, 4, 5]);
    expect(v.stalled).toBe(false);
  });

  test("a real zero (RAM clean too) counts", () => {
    const v = detectStall([s(1, 100 * MiB), s(2, 50 * MiB), s(3, 10 * MiB), s(4, 0, 0)], {
      passes: 3,
    });
    expect(v.stalled).toBe(false);
  });

  test("a decrease within the ratio (the cached value's lag) is still a stall", () => {
    const samples = [s(1, 111 * MiB), s(2, 105 * MiB), s(3, 108 * MiB), s(4, 100 * MiB)];
    expect(detectStall(samples, { passes: 3, minDecreaseRatio: 0.25 }).stalled).toBe(true);
    expect(detectStall(samples, { passes: 3, minDecreaseRatio: 0.05 }).stalled).toBe(false);
  });
});
