import { describe, expect, test } from "vitest";
import { checkMigrationEvents } from "./migration-events.ts";

const ALL = [
  "postcopy-device",
  "none",
  "setup",
  "cancelling",
  "cancelled",
  "active",
  "postcopy-active",
  "postcopy-paused",
  "postcopy-recover-setup",
  "postcopy-recover",
  "completed",
  "failed",
  "device",
  "pre-switchover",
];
const legal = (side: "source" | "destination", path: string) =>
  checkMigrationEvents(side, "completed", path.split(" "), ALL);

describe("legal MIGRATION event paths", () => {
  test("precopy and plain postcopy", () => {
    expect(legal("source", "setup active device completed")).toEqual([]);
    expect(legal("source", "setup active postcopy-active completed")).toEqual([]);
    expect(legal("destination", "setup active postcopy-active completed")).toEqual([]);
    // 11.1: the switchover's device states come first.
    expect(
      legal("source", "setup active device postcopy-device postcopy-active completed"),
    ).toEqual([]);
    expect(legal("destination", "setup active postcopy-device postcopy-active completed")).toEqual(
      [],
    );
  });

  test("postcopy recovered once, and after a double failure", () => {
    expect(
      legal(
        "source",
        "setup active postcopy-active postcopy-paused postcopy-recover postcopy-active completed",
      ),
    ).toEqual([]);
    expect(
      legal(
        "destination",
        "setup active postcopy-active postcopy-paused postcopy-recover-setup postcopy-recover postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active completed",
      ),
    ).toEqual([]);
  });

  test("7.2's destination goes back to setup while it listens for the recovery", () => {
    expect(
      legal(
        "destination",
        "setup active postcopy-active postcopy-paused setup postcopy-recover postcopy-active completed",
      ),
    ).toEqual([]);
    expect(legal("destination", "setup active postcopy-active setup completed")).toHaveLength(1);
  });

  test("a pause before postcopy started, or a state the binary does not declare, is not legal", () => {
    expect(legal("source", "setup active postcopy-paused completed")).toHaveLength(1);
    // The path is legal, but this binary's schema has no postcopy-active.
    expect(
      checkMigrationEvents(
        "source",
        "completed",
        ["setup", "active", "postcopy-active", "completed"],
        ["setup", "active", "completed"],
      ),
    ).toEqual([
      "source emitted MIGRATION statuses its schema's MigrationStatus does not declare: postcopy-active",
    ]);
  });
});
