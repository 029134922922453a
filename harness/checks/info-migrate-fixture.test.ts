import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import type { Side } from "../migration/timeline.ts";
import { migrationFeatures } from "../qmp/migration-features.ts";
import { QmpSchema } from "../qmp/schema.ts";
import {
  expectedFixtures,
  FIXTURE_FILE_PATTERN,
  fixtureFileName,
  type InfoMigrateFixture,
  type InfoMigratePhase,
  loadInfoMigrateFixtures,
  serializeFixture,
} from "./info-migrate-fixture.ts";

const DIR = fileURLToPath(new URL("../fixtures/info-migrate/", import.meta.url));
const SCHEMAS = new URL("../fixtures/qmp-schema/", import.meta.url);
const fixtures = loadInfoMigrateFixtures(DIR);
const versions = [...new Set(fixtures.map((f) => f.qemu))].sort();

/** Whether that QEMU's destination survives a cancelled stream, from its captured schema. */
function destinationCancelled(qemu: string): boolean | undefined {
  const file = new URL(`${qemu.split(".").slice(0, 2).join(".")}.json.gz`, SCHEMAS);
  if (!existsSync(file)) return undefined;
  const schema = QmpSchema.fromReply(JSON.parse(gunzipSync(readFileSync(file)).toString("utf8")));
  return migrationFeatures(schema).migrateIncomingHasExitOnError;
}

/** The status each phase must show (a destination fails when its source cancels). */
function statusFits(side: Side, phase: InfoMigratePhase, status: string | undefined): boolean {
  switch (phase) {
    case "none":
      return status === undefined;
    case "listening":
      // 7.2 shows no status on a listening destination, later releases "setup".
      return status === undefined || status === "setup";
    case "cancelled":
      return status === (side === "source" ? "cancelled" : "failed");
    default:
      return status === phase;
  }
}

test("fixtures were captured", () => {
  expect(versions.length).toBeGreaterThan(0);
});

describe.each(fixtures)("$file", (f) => {
  test("file name says what the contents say", () => {
    const m = FIXTURE_FILE_PATTERN.exec(f.file);
    expect(m, `${f.file} is not <qemu-version>-<side>-<phase>.json`).not.toBeNull();
    expect({ qemu: m?.[1], side: m?.[2], phase: m?.[3] }).toEqual({
      qemu: f.qemu,
      side: f.side,
      phase: f.phase,
    });
    expect(fixtureFileName(f)).toBe(f.file);
  });

  test("query-migrate's status fits the phase", () => {
    expect(statusFits(f.side, f.phase, f.qmp.status), `status ${f.qmp.status}`).toBe(true);
  });

  test("written exactly as the capture script writes it", () => {
    const { file, ...fixture } = f;
    expect(readFileSync(DIR + file, "utf8")).toBe(serializeFixture(fixture as InfoMigrateFixture));
  });
});

describe.each(versions)("QEMU %s", (qemu) => {
  const mine = fixtures.filter((f) => f.qemu === qemu);
  const names = mine.map((f) => `${f.side}-${f.phase}`).sort();
  const expected = (withDestinationCancelled: boolean) =>
    expectedFixtures({ destinationCancelled: withDestinationCancelled })
      .map((e) => `${e.side}-${e.phase}`)
      .sort();

  test("every phase captured, nothing else", () => {
    const survives = destinationCancelled(qemu);
    if (survives === undefined) {
      // No schema captured for it: destination-cancelled may or may not be possible.
      expect([expected(false), expected(true)]).toContainEqual(names);
    } else {
      expect(names).toEqual(expected(survives));
    }
  });

  test("info migrate -a on every snapshot or on none (HMP takes it or not)", () => {
    expect(new Set(mine.map((f) => f.hmpAll !== undefined)).size).toBe(1);
  });
});

test("expectedFixtures: destination-cancelled only where the destination survives", () => {
  const without = expectedFixtures({ destinationCancelled: false });
  const withIt = expectedFixtures({ destinationCancelled: true });
  expect(withIt.length).toBe(without.length + 1);
  expect(withIt).toContainEqual({ side: "destination", phase: "cancelled" });
  expect(without).not.toContainEqual({ side: "destination", phase: "cancelled" });
  expect(without).not.toContainEqual({ side: "destination", phase: "failed" });
});
