import { describe, expect, test } from "vitest";
import { DEFAULT_DIRTY_RATE_MIBPS } from "../guest/dirty-rate.ts";
import { UsageError } from "./args.ts";
import { migrateSettings, migrateUsage } from "./migrate.ts";

describe("qemu-migtest migrate: the guest's dirty rate", () => {
  test("paced by default; --dirty-rate in MiB/s, 0 unpaced; --page-spin stays a raw knob", () => {
    expect(migrateSettings([], {})).toMatchObject({
      dirtyRateMiBps: DEFAULT_DIRTY_RATE_MIBPS,
      pageSpin: 0,
    });
    expect(migrateSettings(["--dirty-rate", "128"], {})).toMatchObject({ dirtyRateMiBps: 128 });
    expect(migrateSettings(["--dirty-rate", "0.5"], {})).toMatchObject({ dirtyRateMiBps: 0.5 });
    expect(migrateSettings(["--dirty-rate", "0", "--page-spin", "20000"], {})).toMatchObject({
      dirtyRateMiBps: 0,
      pageSpin: 20000,
    });
    expect(migrateUsage).toContain("--dirty-rate MiB/s");
  });

  test("a rate that is no rate is a usage error saying what is valid", () => {
    for (const bad of ["-1", "NaN", "fast", "1e3"]) {
      expect(() => migrateSettings(["--dirty-rate", bad], {})).toThrow(UsageError);
    }
    expect(() => migrateSettings(["--dirty-rate=-1"], {})).toThrow(
      /--dirty-rate takes a non-negative number of MiB\/s, not "-1"/,
    );
    expect(() => migrateSettings(["--dirty-rate", "33554432"], {})).toThrow(/not bytes\/s/);
  });
});
