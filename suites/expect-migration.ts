// Checks of a completed migration on both sides and both interfaces: final states, legal
// MIGRATION event paths, RAM statistics, and (harness/checks/timeline-checks.ts, which the fixture also
// runs on every pair) counters over time and HMP against QMP throughout.

import { expect } from "vitest";
import { checkMigrationEvents, type Outcome } from "../harness/checks/migration-events.ts";
import { counterProblems, hmpAgainstQmpProblems } from "../harness/checks/timeline-checks.ts";
import { compareWithQmp } from "../harness/hmp/compare-qmp.ts";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import type { MigrationPair, MigrationResult } from "../harness/migration/pair.ts";
import type { Side, Timeline } from "../harness/migration/timeline.ts";
import type { MigrationInfo, MigrationStats } from "../harness/qmp/qapi.ts";
import { timeoutMs } from "../harness/util/timeouts.ts";

export function expectSourceRamConsistent(
  ram: MigrationStats | undefined,
  memoryMiB: number,
  options: { streamBroke?: boolean } = {},
): void {
  expect(ram, "source query-migrate has no ram member after completion").toBeDefined();
  if (!ram) return;
  expect(ram.remaining, "ram.remaining after completion").toBe(0);
  expect(ram.total, "ram.total covers the guest RAM").toBeGreaterThanOrEqual(memoryMiB << 20);
  expect(ram["page-size"], "ram.page-size (x86 target page)").toBe(4096);
  expect(ram["normal-bytes"], "ram.normal-bytes = normal x page-size").toBe(
    ram.normal * ram["page-size"],
  );
  const parts =
    (ram["precopy-bytes"] ?? 0) + (ram["downtime-bytes"] ?? 0) + (ram["postcopy-bytes"] ?? 0);
  // Bytes are counted into precopy/postcopy-bytes when queued and into transferred when flushed:
  // a stream that broke (postcopy paused, then recovered) loses what was queued, so only an
  // unbroken migration must satisfy this exactly.
  if (!options.streamBroke) {
    expect(
      ram.transferred,
      "ram.transferred >= precopy + downtime + postcopy bytes",
    ).toBeGreaterThanOrEqual(parts);
  }
  expect(
    ram["dirty-sync-count"],
    "ram.dirty-sync-count: at least the first sync",
  ).toBeGreaterThanOrEqual(1);
}

/** No source work counter goes down within a migration attempt. */
export function expectCountersMonotonic(timeline: Timeline): void {
  expect(counterProblems(timeline)).toEqual([]);
}

/** Every info migrate of `side` agrees with the query-migrate replies read around it. */
export function expectHmpMatchesQmpThroughout(timeline: Timeline, side: Side): void {
  expect(
    timeline.hmpBrackets(side).length,
    `${side}: info migrate snapshots bracketed by query-migrate`,
  ).toBeGreaterThan(0);
  expect(hmpAgainstQmpProblems(timeline, side)).toEqual([]);
}

export function expectLegalEvents(
  pair: MigrationPair,
  side: Side,
  outcome: Outcome,
  events: string[],
): void {
  const known = pair.features(side).migrationStatuses;
  expect(checkMigrationEvents(side, outcome, events, known), `${side} MIGRATION events`).toEqual(
    [],
  );
}

export function expectFinalBothSides(
  pair: MigrationPair,
  result: MigrationResult,
  memoryMiB: number,
): void {
  const src = result.source;
  const dst = result.destination;
  expect(src.migration.status, "source query-migrate status").toBe("completed");
  expect(dst.migration.status, "destination query-migrate status").toBe("completed");
  expect(src.vm.status, "source VM run state after migration").toBe("postmigrate");
  expect(src.vm.running, "source VM must be stopped").toBe(false);
  expect(dst.vm.running, `destination VM must run (query-status: ${dst.vm.status})`).toBe(true);
  expectLegalEvents(pair, "source", "completed", src.events);
  expectLegalEvents(pair, "destination", "completed", dst.events);

  expectSourceRamConsistent(src.migration.ram, memoryMiB, {
    streamBroke: src.events.includes("postcopy-paused"),
  });
  const m: MigrationInfo = src.migration;
  expect(m["total-time"], "source total-time").toBeGreaterThan(0);
  expect(m["total-time"] ?? 0, "source total-time >= setup-time").toBeGreaterThanOrEqual(
    m["setup-time"] ?? 0,
  );
  expect(m.downtime, "source downtime after completion").toBeGreaterThanOrEqual(0);

  for (const side of ["source", "destination"] as const) {
    const parsed = parseInfoMigrate(result[side].infoMigrate);
    expect(parsed.status, `${side} HMP status`).toBe("completed");
    expect(parsed.unknownLines, `${side} HMP lines the parser does not know`).toEqual([]);
    expect(
      compareWithQmp(parsed, result[side].migration, { live: false }),
      `${side} final HMP vs QMP`,
    ).toEqual([]);
  }
}

/** The whole set for a completed migration: final states, then everything over the timeline. */
export function expectCompletedMigration(
  pair: MigrationPair,
  result: MigrationResult,
  memoryMiB: number,
): void {
  expectFinalBothSides(pair, result, memoryMiB);
  expect(result.ram?.check.ok, result.ram?.check.summary ?? "no RAM check ran").toBe(true);
  expectCountersMonotonic(pair.timeline);
  expectHmpMatchesQmpThroughout(pair.timeline, "source");
  expectHmpMatchesQmpThroughout(pair.timeline, "destination");
}

/**
 * One more migration of a pair already set up for it (a fresh destination, converging limits):
 * both sides complete, the final states hold on both interfaces, the guest's memory verifies.
 */
export async function expectMigratesToCompletion(
  pair: MigrationPair,
  memoryMiB: number,
): Promise<MigrationResult> {
  const started = Date.now();
  const uri = await pair.startIncoming();
  await pair.startMigration(uri);
  await pair.waitForStatuses(
    { source: ["completed"], destination: ["completed"] },
    { timeoutMs: timeoutMs("migration") },
  );
  const result = await pair.finishCompleted(uri, started, true);
  expectFinalBothSides(pair, result, memoryMiB);
  expect(result.ram?.check.ok, result.ram?.check.summary ?? "no RAM check ran").toBe(true);
  return result;
}
