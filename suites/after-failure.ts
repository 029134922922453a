// Nothing lost after a migration that did not complete: the source's VM runs, its guest memory
// holds the boot-block pattern page by page (the same check as on a destination), its QMP and
// HMP agree on how the migration ended, and the same source migrates again to a fresh
// destination, which completes with the guest's memory intact (A -> B broke, then A -> C).

import { expect } from "vitest";
import type { Outcome } from "../harness/checks/migration-events.ts";
import { checkGuestRam } from "../harness/guest/guest.ts";
import { compareWithQmp } from "../harness/hmp/compare-qmp.ts";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import { CONVERGING_PARAMETERS } from "../harness/migration/convergence.ts";
import type { MigrationPair, MigrationResult, SideResult } from "../harness/migration/pair.ts";
import type { Side } from "../harness/migration/timeline.ts";
import { timeoutMs } from "../harness/util/timeouts.ts";
import { expectLegalEvents, expectMigratesToCompletion } from "./expect-migration.ts";

/** One side's final state as both interfaces say it: the status, and HMP agreeing with QMP. */
export function expectSideEnded(
  pair: MigrationPair,
  side: Side,
  r: SideResult,
  status: Outcome,
): void {
  expect(r.migration.status, `${side} query-migrate status`).toBe(status);
  const hmp = parseInfoMigrate(r.infoMigrate);
  expect(hmp.status, `${side} HMP status`).toBe(status);
  expect(hmp.unknownLines, `${side} HMP lines the parser does not know`).toEqual([]);
  expect(compareWithQmp(hmp, r.migration, { live: false }), `${side} HMP vs QMP`).toEqual([]);
  expectLegalEvents(pair, side, status, r.events);
}

/**
 * The destination of a migration that broke: `failed` and still answering (exit-on-error=false),
 * or exited with code 1 as declared (exit-on-error, the only way before 9.1).
 */
export function expectDestinationBroke(
  pair: MigrationPair,
  result: Pick<MigrationResult, "destination">,
): void {
  const dst = pair.destination;
  if (dst.isRunning()) {
    expectSideEnded(pair, "destination", result.destination, "failed");
    expect(result.destination.vm.running, "destination VM never started").toBe(false);
  } else {
    expect(dst.exit, `destination exit: ${pair.describeExit("destination")}`).toEqual({
      exitCode: 1,
    });
  }
}

/** The destination keeps running after a failed incoming migration where QEMU can (9.1+); else it exits 1, declared. */
export function incomingOptions(pair: MigrationPair): { exitOnError?: boolean } {
  if (pair.features("destination").migrateIncomingHasExitOnError) return { exitOnError: false };
  pair.expectExit("destination", { exitCode: 1 });
  return {};
}

/** The source VM runs and its guest memory is intact (checked through pmemsave), then runs on. */
export async function expectSourceIntact(pair: MigrationPair): Promise<void> {
  const vm = await pair.source.queryStatus();
  expect(
    vm.running,
    `source VM must run after the migration broke (query-status: ${vm.status})`,
  ).toBe(true);
  const ram = await checkGuestRam(pair.source, pair.guest, timeoutMs("guestLiveness"));
  pair.timeline.record(
    "source",
    "note",
    `source RAM after the broken migration: ${ram.check.summary}`,
  );
  expect(ram.check.ok, `source RAM: ${ram.check.summary}`).toBe(true);
  // The check stopped the guest to read a consistent picture: it goes on running.
  await pair.contVm("source");
}

/** A -> C: the same source to a fresh destination, completed, the guest's memory intact there. */
export async function migrateAgain(
  pair: MigrationPair,
  memoryMiB: number,
): Promise<MigrationResult> {
  await pair.replaceDestination();
  // A held migration left the source under limits it cannot converge under.
  await pair.setParameters("source", CONVERGING_PARAMETERS);
  // A source left pausing before switchover would wait there for a migrate-continue.
  const caps = await pair.queryCapabilities("source");
  if (caps.some((c) => c.capability === "pause-before-switchover" && c.state)) {
    await pair.setCapabilities("source", { "pause-before-switchover": false });
  }
  return expectMigratesToCompletion(pair, memoryMiB);
}

/** Everything above after a migration that broke: source intact, then migrated again. */
export async function expectNothingLost(
  pair: MigrationPair,
  memoryMiB: number,
): Promise<MigrationResult> {
  await expectSourceIntact(pair);
  return migrateAgain(pair, memoryMiB);
}
