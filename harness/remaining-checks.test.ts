import { describe, expect, test } from "vitest";
import { snapshotFixture } from "./ab/fixtures.test-helpers.ts";
import { checkRemaining } from "./remaining-checks.ts";

// Recorded 11.1.3 output (which has the system-wide remaining) and 10.0.2 output (which does not).
const active = snapshotFixture("11.1.3-source-active");
const activeDst = snapshotFixture("11.1.3-destination-active");
const completed = snapshotFixture("11.1.3-source-completed");

describe("checkRemaining on a build whose schema declares MigrationInfo.remaining", () => {
  test("real 11.1.3 snapshots pass: present while active, HMP agrees within rounding", () => {
    const v = checkRemaining({ schemaDeclares: true, snapshots: [active, activeDst, completed] });
    expect(v.failures).toEqual([]);
    expect(v.status).toBe("pass");
  });

  test("HMP printing the value >> 10 fails, naming side, phase, snapshot and both values", () => {
    const wrong = {
      ...active,
      infoMigrate: active.infoMigrate.replace("Remaining: \t\t57.4 MiB", "Remaining: \t\t57.4 KiB"),
    };
    const v = checkRemaining({ schemaDeclares: true, snapshots: [wrong] });
    expect(v.status).toBe("fail");
    expect(v.failures).toEqual([
      'source, phase active, snapshot 1 (t=1000 ms): HMP "Remaining: 57.4 KiB" stands for 58727..58828 bytes, but query-migrate "remaining" was 60190720 bytes (57.4 MiB): they disagree; HMP is 0.000977 times the QMP value',
    ]);
  });

  test("a value that moved between the two reads is accepted when HMP lies between them", () => {
    const moving = {
      ...active,
      before: { ...active.before, remaining: 61_000_000 },
      after: { ...active.after, remaining: 59_000_000 },
    };
    expect(checkRemaining({ schemaDeclares: true, snapshots: [moving] }).status).toBe("pass");
  });

  test("the member missing on the source while active fails, as does a Remaining: line without it", () => {
    const { remaining: _, ...without } = active.after;
    const v = checkRemaining({
      schemaDeclares: true,
      snapshots: [{ ...active, before: without, after: without }],
    });
    expect(v.status).toBe("fail");
    expect(v.failures[0]).toMatch(
      /^source, phase active, snapshot 1 \(t=1000 ms\): query-migrate \(read before info migrate\) has no top-level "remaining" although query-qmp-schema declares MigrationInfo.remaining; members were: expected-downtime, status,/,
    );
    expect(v.failures).toContain(
      'source, phase active, snapshot 1 (t=1000 ms): HMP info migrate prints "Remaining: 57.4 MiB" but query-migrate has no "remaining" before or after it',
    );
  });

  test("no active source snapshot cannot pass", () => {
    const v = checkRemaining({ schemaDeclares: true, snapshots: [completed] });
    expect(v.status).toBe("fail");
    expect(v.failures[0]).toMatch(/no snapshot was taken while the migration was active/);
  });
});

describe("checkRemaining on a build without it", () => {
  test("10.0.2 snapshots are 'absent'", () => {
    const snaps = [
      "10.0.2-source-active",
      "10.0.2-destination-active",
      "10.0.2-source-completed",
    ].map((n) => snapshotFixture(n));
    const v = checkRemaining({ schemaDeclares: false, snapshots: snaps });
    expect(v).toMatchObject({ status: "absent", failures: [] });
  });

  test("showing it without declaring it fails", () => {
    const v = checkRemaining({ schemaDeclares: false, snapshots: [active] });
    expect(v.status).toBe("fail");
    expect(v.failures).toEqual([
      'source, phase active, snapshot 1 (t=1000 ms): query-migrate returns "remaining" but query-qmp-schema does not declare MigrationInfo.remaining',
      'source, phase active, snapshot 1 (t=1000 ms): HMP prints "Remaining: 57.4 MiB" but query-qmp-schema does not declare MigrationInfo.remaining',
    ]);
  });
});
