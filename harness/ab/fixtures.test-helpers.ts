// Loads recorded QEMU output (harness/fixtures) as A/B snapshots, for the A/B unit tests.

import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import type { MigrationInfo } from "../qmp/qapi.ts";
import { QmpSchema } from "../qmp/schema.ts";
import type { AbSnapshot } from "./scenario.ts";

const FIXTURES = new URL("../fixtures/", import.meta.url);

export function schemaFixture(version: "7.2" | "10.0" | "11.1"): QmpSchema {
  return QmpSchema.fromReply(
    JSON.parse(
      gunzipSync(readFileSync(new URL(`qmp-schema/${version}.json.gz`, FIXTURES))).toString(),
    ),
  );
}

interface InfoMigrateFixture {
  qemu: string;
  side: "source" | "destination";
  phase: string;
  qmp: MigrationInfo;
  hmp: string;
}

/** A recorded info-migrate fixture as one snapshot (the same reply before and after). */
export function snapshotFixture(name: string, overrides: Partial<AbSnapshot> = {}): AbSnapshot {
  const f = JSON.parse(
    readFileSync(new URL(`info-migrate/${name}.json`, FIXTURES), "utf8"),
  ) as InfoMigrateFixture;
  return {
    phase: f.phase,
    side: f.side,
    t: 1000,
    before: f.qmp,
    infoMigrate: f.hmp,
    after: f.qmp,
    ...overrides,
  };
}
