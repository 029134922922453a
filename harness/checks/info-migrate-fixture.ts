// The info-migrate fixtures (harness/fixtures/info-migrate/): one side's query-migrate and HMP
// `info migrate` at one phase of a real migration, written by scripts/capture-info-migrate.ts
// and read by the parser's tests. File name, contents and the set of phases are defined here once.

import { readdirSync, readFileSync } from "node:fs";
import type { Side } from "../migration/timeline.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";

/** Where in a migration the snapshot was taken (the `phase` member and the file name's end). */
export type InfoMigratePhase =
  | "none"
  | "listening"
  | "active"
  | "completed"
  | "cancelled"
  | "failed";

export interface InfoMigrateFixture {
  /** Full version, "7.2.22". */
  qemu: string;
  side: Side;
  phase: InfoMigratePhase;
  /** query-migrate's return, read just before `hmp` with the same status just after. */
  qmp: MigrationInfo;
  /** `info migrate`, verbatim. */
  hmp: string;
  /** `info migrate -a`, verbatim; only from a QEMU whose HMP accepts `-a`. */
  hmpAll?: string;
}

export const FIXTURE_FILE_PATTERN =
  /^(\d+\.\d+\.\d+)-(source|destination)-(none|listening|active|completed|cancelled|failed)\.json$/;

export function fixtureFileName(f: Pick<InfoMigrateFixture, "qemu" | "side" | "phase">): string {
  return `${f.qemu}-${f.side}-${f.phase}.json`;
}

/**
 * The snapshots a complete capture has for one QEMU. A destination only has a `cancelled` state
 * to show when its migrate-incoming takes exit-on-error=false; otherwise it exits on the
 * cancelled stream. The failed migration has no destination (nobody listens), and a source never
 * listens.
 */
export function expectedFixtures(options: {
  destinationCancelled: boolean;
}): { side: Side; phase: InfoMigratePhase }[] {
  return [
    { side: "source", phase: "none" },
    { side: "source", phase: "active" },
    { side: "source", phase: "completed" },
    { side: "source", phase: "cancelled" },
    { side: "source", phase: "failed" },
    { side: "destination", phase: "none" },
    { side: "destination", phase: "listening" },
    { side: "destination", phase: "active" },
    { side: "destination", phase: "completed" },
    ...(options.destinationCancelled
      ? [{ side: "destination" as const, phase: "cancelled" as const }]
      : []),
  ];
}

/** Every fixture in `dir` (a path ending in "/" or a directory URL), sorted by file name. */
export function loadInfoMigrateFixtures(
  dir: string | URL,
): (InfoMigrateFixture & { file: string })[] {
  const base = typeof dir === "string" && !dir.endsWith("/") ? `${dir}/` : dir;
  return readdirSync(base)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((file) => ({
      file,
      ...(JSON.parse(
        readFileSync(typeof base === "string" ? base + file : new URL(file, base), "utf8"),
      ) as InfoMigrateFixture),
    }));
}

/** The file's text: two-space JSON and a final newline, as every fixture is written. */
export function serializeFixture(f: InfoMigrateFixture): string {
  const { qemu, side, phase, qmp, hmp, hmpAll } = f;
  return `${JSON.stringify({ qemu, side, phase, qmp, hmp, ...(hmpAll === undefined ? {} : { hmpAll }) }, null, 2)}\n`;
}
