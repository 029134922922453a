import { describe, expect, test } from "vitest";
import { snapshotFixture } from "../ab/fixtures.test-helpers.ts";
import { parseInfoMigrate } from "../hmp/info-migrate.ts";
import { formatSizeToStr, parseSizeToStr } from "../hmp/size.ts";
import { checkHmpAgreesWithQmp, checkRemaining } from "./remaining-checks.ts";

// Recorded 11.1.3 output (which has the system-wide remaining) and 10.0.2 output (which does not).
const active = snapshotFixture("11.1.3-source-active");
const activeDst = snapshotFixture("11.1.3-destination-active");
const completed = snapshotFixture("11.1.3-source-completed");

// The fixture's own values (recaptured fixtures differ run to run): what QMP said, what HMP printed.
const qmpRemaining = active.before.remaining as number;
const printed = parseInfoMigrate(active.infoMigrate).remaining;
if (typeof qmpRemaining !== "number" || !printed) {
  throw new Error("11.1.3-source-active: fixture without a top-level remaining in QMP and HMP");
}

describe("checkRemaining on a build whose schema declares MigrationInfo.remaining", () => {
  test("real 11.1.3 snapshots pass: present while active, HMP agrees within rounding", () => {
    const v = checkRemaining({ schemaDeclares: true, snapshots: [active, activeDst, completed] });
    expect(v.failures).toEqual([]);
    expect(v.status).toBe("pass");
  });

  test("HMP printing the value >> 10 fails, naming side, phase, snapshot and both values", () => {
    expect(printed.text).toBe(formatSizeToStr(qmpRemaining));
    expect(printed.text).toMatch(/ MiB$/);
    // The value printed >> 10: about 1/1024 of QMP's, off by HMP's rounding.
    const shifted = parseSizeToStr(printed.text.replace(/ MiB$/, " KiB"));
    expect(shifted.bytes / qmpRemaining).toBeCloseTo(1 / 1024, 5);
    const wrong = {
      ...active,
      infoMigrate: active.infoMigrate.replace(
        `Remaining: \t\t${printed.text}`,
        `Remaining: \t\t${shifted.text}`,
      ),
    };
    expect(wrong.infoMigrate).not.toBe(active.infoMigrate);
    const v = checkRemaining({ schemaDeclares: true, snapshots: [wrong] });
    expect(v.status).toBe("fail");
    expect(v.failures).toEqual([
      `source, phase active, snapshot 1 (t=1000 ms): HMP "Remaining: ${shifted.text}" stands for ${shifted.min}..${shifted.max} bytes, but query-migrate "remaining" was ${qmpRemaining} bytes (${printed.text}): they disagree; HMP is ${(shifted.bytes / qmpRemaining).toPrecision(3)} times the QMP value`,
    ]);
  });

  test("a value that moved between the two reads is accepted when HMP lies between them", () => {
    // Each read alone lies outside what HMP printed; together they bracket it.
    const before = printed.max + 1_000_000;
    const after = printed.min - 1_000_000;
    const moving = {
      ...active,
      before: { ...active.before, remaining: before },
      after: { ...active.after, remaining: after },
    };
    expect(checkRemaining({ schemaDeclares: true, snapshots: [moving] }).status).toBe("pass");
    for (const alone of [before, after]) {
      const still = {
        ...active,
        before: { ...active.before, remaining: alone },
        after: { ...active.after, remaining: alone },
      };
      expect(checkRemaining({ schemaDeclares: true, snapshots: [still] }).status).toBe("fail");
    }
  });

  test("across a state change (one read has the member) only presence is held, not the moving value", () => {
    const { remaining: _, ...without } = active.before;
    const far = printed.max + 50_000_000;
    const transition = { ...active, before: without, after: { ...active.after, remaining: far } };
    expect(checkHmpAgreesWithQmp([transition])).toEqual([]);
    // With both reads present the same far value is a disagreement.
    const both = { ...transition, before: { ...active.before, remaining: far } };
    expect(checkHmpAgreesWithQmp([both])[0]).toMatch(/they disagree/);
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
      `source, phase active, snapshot 1 (t=1000 ms): HMP info migrate prints "Remaining: ${printed.text}" but query-migrate has no "remaining" before or after it`,
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
      `source, phase active, snapshot 1 (t=1000 ms): HMP prints "Remaining: ${printed.text}" but query-qmp-schema does not declare MigrationInfo.remaining`,
    ]);
  });
});
