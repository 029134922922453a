import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import { migrationFeatures } from "../qmp/migration-features.ts";
import { QmpSchema } from "../qmp/schema.ts";
import { assertEveryStateClassified, cancelTable } from "./cancel-states.ts";

function capturedStatuses(version: string): string[] {
  const url = new URL(`../fixtures/qmp-schema/${version}.json.gz`, import.meta.url);
  const schema = QmpSchema.fromReply(JSON.parse(gunzipSync(readFileSync(url)).toString("utf8")));
  return migrationFeatures(schema).migrationStatuses;
}

describe("cancel states", () => {
  for (const version of ["7.2", "10.0", "11.1"]) {
    test(`every MigrationStatus of the captured ${version} schema is classified`, () => {
      const statuses = capturedStatuses(version);
      expect(statuses.length).toBeGreaterThan(10);
      const table = assertEveryStateClassified(statuses, version);
      expect(table.cases.map((c) => c.state)).toEqual(
        expect.arrayContaining(["none", "setup", "active", "pre-switchover", "completed"]),
      );
      expect(table.cases.length + table.notReachable.length).toBe(statuses.length);
    });
  }

  test("a state the table does not know fails the guard, named", () => {
    const fake = [...capturedStatuses("11.1"), "frobnicating"];
    expect(cancelTable(fake).unclassified).toEqual(["frobnicating"]);
    expect(() => assertEveryStateClassified(fake, "QEMU 99.0")).toThrow(
      /QEMU 99.0: MigrationStatus has state\(s\) the cancel table does not classify: "frobnicating"/,
    );
  });

  test("no-op states leave the source unchanged, the others end cancelled", () => {
    const t = cancelTable(["none", "active", "completed", "failed", "cancelling"]);
    const ends = Object.fromEntries(t.cases.map((c) => [c.state, c.sourceEnds]));
    expect(ends).toEqual({
      none: "unchanged",
      active: "cancelled",
      completed: "unchanged",
      failed: "unchanged",
      cancelling: "cancelled",
    });
  });
});
