import { describe, expect, test } from "vitest";
import { parseInfoMigrate } from "../hmp/info-migrate.ts";
import { parseSizeToStr } from "../hmp/size.ts";
import { renderAbHtml, renderAbText } from "./ab-report.ts";
import { schemaFixture, snapshotFixture } from "./fixtures.test-helpers.ts";
import { compareAbRuns } from "./run-ab.ts";
import { type AbScenarioRecord, type AbSnapshot, DEFAULT_AB_SCENARIO } from "./scenario.ts";

// Recorded 10.0.2 output as the "base" and 11.1.3 output as the "patched" build: 11.1 is what
// the system-wide remaining patch added to, so the A/B must show exactly that feature.
function record(version: "10.0" | "11.1", snapshots: AbSnapshot[]): AbScenarioRecord {
  return {
    binary: { path: `/q/${version}`, version },
    scenario: DEFAULT_AB_SCENARIO,
    schema: schemaFixture(version).info,
    snapshots,
    outcome: { ok: true },
  };
}
const summary = (r: AbScenarioRecord) => ({
  source: r.binary.path,
  patches: [],
  wrapper: r.binary.path,
  hash: "0000",
  version: r.binary.version,
  cached: true,
  buildMs: 0,
  scenario: { ok: true, snapshots: r.snapshots.length, durationMs: 1 },
});
const snaps = (v: string) =>
  ["source-active", "destination-active", "source-completed"].map((p) =>
    snapshotFixture(`${v}-${p}`),
  );

describe("compareAbRuns on recorded 10.0.2 and 11.1.3 output", () => {
  const base = record("10.0", snaps("10.0.2"));
  const patched = record("11.1", snaps("11.1.3"));
  const report = compareAbRuns(
    DEFAULT_AB_SCENARIO,
    { summary: summary(base), record: base },
    { summary: summary(patched), record: patched },
  );

  test("the remaining member, its HMP line and the verdict change are all reported", () => {
    expect(report.schemaChanges.map((c) => c.text)).toContain(
      "added: command query-migrate: return.remaining (int, optional)",
    );
    expect(report.migrateChanges.map((c) => c.text)).toContain(
      "query-migrate remaining appears (source, active): number (non-zero)",
    );
    expect(report.hmpChanges.map((c) => c.text)).toContain(
      'info migrate line "Remaining:" appears (source, active)',
    );
    expect(report.verdicts.find((v) => v.name === "remaining")).toMatchObject({
      base: "absent",
      patched: "pass",
      differs: true,
    });
  });

  test("a patched build failing the remaining check fails the A/B run with that message", () => {
    // The value the fixture printed, shifted to KiB: what an HMP line printing `>> 10` shows.
    const active = snaps("11.1.3").find((s) => s.side === "source" && s.phase === "active");
    const printed = active && parseInfoMigrate(active.infoMigrate).remaining;
    const q = active?.before.remaining;
    if (!printed || typeof q !== "number")
      throw new Error("11.1.3 source-active fixture has no remaining");
    const shifted = parseSizeToStr(printed.text.replace(/ MiB$/, " KiB"));
    const wrong = snaps("11.1.3").map((s) => ({
      ...s,
      infoMigrate: s.infoMigrate.replace(printed.text, shifted.text),
    }));
    const bad = record("11.1", wrong);
    const r = compareAbRuns(
      DEFAULT_AB_SCENARIO,
      { summary: summary(base), record: base },
      { summary: summary(bad), record: bad },
    );
    expect(r.ok).toBe(false);
    expect(r.failures).toEqual([
      `patched build fails "remaining": source, phase active, snapshot 1 (t=1000 ms): HMP "Remaining: ${shifted.text}" stands for ${shifted.min}..${shifted.max} bytes, but query-migrate "remaining" was ${q} bytes (${printed.text}): they disagree; HMP is ${(shifted.bytes / q).toPrecision(3)} times the QMP value`,
    ]);
    expect(renderAbText(r)).toMatch(/A\/B: FAIL\n {2}patched build fails "remaining"/);
  });

  test("text and HTML carry the same findings; HTML escapes what QEMU printed", () => {
    const text = renderAbText(report);
    expect(text).toContain("remaining: base absent, patched pass   <- differs");
    const html = renderAbHtml(report);
    expect(html).toContain("info migrate line &quot;Remaining:&quot; appears (source, active)");
    const embedded = /<script type="application\/json" id="ab-report">(.*)<\/script>/s.exec(
      html,
    )?.[1];
    expect(JSON.parse(embedded ?? "null")).toMatchObject({
      format: "qemu-migtest-ab/1",
      ok: report.ok,
    });
  });
});
