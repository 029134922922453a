import { describe, expect, test } from "vitest";
import { sampleRun } from "../report/fixture.ts";
import { MiB } from "../util/units.ts";
import { capabilities, keyValues, parseFlags, UsageError } from "./args.ts";
import { formatBytes, progressLine, runSummary, table } from "./format.ts";
import { migrateOptions, migrateSettings } from "./migrate.ts";
import { Progress } from "./progress.ts";

const ram = {
  transferred: 300 * MiB,
  remaining: 12.5 * MiB,
  total: 128 * MiB,
  duplicate: 0,
  normal: 0,
  "normal-bytes": 0,
  mbps: 812.345,
  "page-size": 4096,
  "pages-per-second": 1,
  "dirty-pages-rate": 4711,
  "dirty-sync-count": 3,
};

describe("progress line", () => {
  test("status, pass, transferred, remaining, throughput, dirty rate, expected downtime", () => {
    const line = progressLine(2345, { status: "active", ram, "expected-downtime": 420 });
    expect(line).toBe(
      "  2.3s  active  pass 3  transferred 300 MiB  remaining 12.5 MiB  812.3 Mbps  dirty 4711 pages/s  expected downtime 420 ms",
    );
  });

  test("system-wide remaining when QEMU has it; passes from events without dirty-sync-count", () => {
    const { "dirty-sync-count": _, ...noSync } = ram;
    const line = progressLine(0, { status: "active", ram: noSync, remaining: 13 * MiB }, 7);
    expect(line).toContain("pass 7");
    expect(line).toContain("remaining 12.5 MiB (system-wide 13 MiB)");
  });

  test("formatBytes", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(4.02 * 2 ** 30)).toBe("4.02 GiB");
    expect(formatBytes(undefined)).toBe("-");
  });

  test("TTY: one line redrawn in place; status changes above it", () => {
    let out = "";
    const p = new Progress({ write: (t) => (out += t), isTTY: true, columns: 200 });
    p.snapshot("source", {
      migration: { status: "active", ram },
      infoMigrate: "",
      before: { status: "active", ram },
    });
    p.snapshot("source", {
      migration: { status: "active", ram },
      infoMigrate: "",
      before: { status: "active", ram },
    });
    p.finish();
    expect(out.startsWith("source migration status: active\n\r\x1b[K")).toBe(true);
    expect(out.split("\r\x1b[K")).toHaveLength(3);
    expect(out.endsWith("\n")).toBe(true);
  });

  test("not a TTY: plain lines, at most one per interval, never escape codes", () => {
    let out = "";
    const p = new Progress({ write: (t) => (out += t) }, 60_000);
    for (let i = 0; i < 5; i++)
      p.snapshot("source", {
        migration: { status: "active", ram },
        infoMigrate: "",
        before: { status: "active", ram },
      });
    p.snapshot("source", {
      migration: { status: "completed", ram },
      infoMigrate: "",
      before: { status: "completed", ram },
    });
    expect(out).not.toContain("\x1b");
    expect(out.match(/^progress: /gm)).toHaveLength(2);
    expect(out).toContain("source migration status: completed\n");
  });
});

describe("flags", () => {
  test("an unknown flag lists the valid ones", () => {
    expect(() => parseFlags("qemu-migtest migrate", ["--colour"], migrateOptions)).toThrow(
      /unknown option --colour; valid options: --binary VALUE, .*--max-bandwidth VALUE/,
    );
  });

  test("bad values say what is valid", () => {
    expect(() => migrateSettings(["--accel", "hvf"])).toThrow(
      /--accel must be one of auto, kvm, tcg, not "hvf"/,
    );
    expect(() => migrateSettings(["--guest", "linux"])).toThrow(
      /--guest must be one of bootblock, none/,
    );
    expect(() => migrateSettings(["--max-bandwidth", "1e6"])).toThrow(UsageError);
    expect(() => migrateSettings(["extra"])).toThrow(/no positional arguments/);
  });

  test("parameters, capabilities, per-side binaries", () => {
    expect(keyValues("--parameter", ["multifd-channels=4", "mode=normal", "x=true"])).toEqual({
      "multifd-channels": 4,
      mode: "normal",
      x: true,
    });
    expect(capabilities(["multifd", "xbzrle=off"])).toEqual({ multifd: true, xbzrle: false });
    expect(() => capabilities(["multifd=maybe"])).toThrow(/on or off/);
    const s = migrateSettings(
      ["--binary", "10.0", "--destination-binary", "11.1", "--downtime-limit", "50"],
      {},
    );
    expect(s).toMatchObject({
      sourceBinary: "10.0",
      destinationBinary: "11.1",
      parameters: { "downtime-limit": 50 },
      guest: "bootblock",
    });
  });
});

describe("summary", () => {
  test("both sides side by side, info migrate of each, verdicts, RAM check", () => {
    const text = runSummary(sampleRun());
    expect(text).toMatch(/^migration status\s+completed\s+completed$/m);
    expect(text).toContain("source info migrate:");
    expect(text).toContain("destination info migrate:");
    expect(text).toContain("PASS both sides completed");
    expect(text).toMatch(/RAM check: not run$/);
  });

  test("table aligns columns", () => {
    expect(
      table(
        [
          ["a", "bb"],
          ["ccc", "d"],
        ],
        { header: true },
      ),
    ).toBe("a    bb\n---  --\nccc  d");
  });
});
