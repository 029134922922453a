// The plain flow of a pair and its ending: the precopy path from a started guest to a verified
// destination, and the final state of both sides for any outcome.

import { checkGuestRam, type RamIntegrity, waitForGuestStart } from "../guest/guest.ts";
import type { Machine } from "../qemu/machine.ts";
import type { StatusInfo } from "../qmp/qapi.ts";
import { timeoutMs } from "../util/timeouts.ts";
import type { MigrationPair } from "./pair.ts";
import type { MigrationOutcome, MigrationResult, SideResult } from "./result.ts";
import type { Side } from "./timeline.ts";

function exitedVm(m: Machine): StatusInfo {
  return { running: false, status: `exited (${JSON.stringify(m.exit)})` } as StatusInfo;
}

/**
 * The whole precopy flow: incoming, migrate, both sides completed, destination running, the
 * guest's RAM verified. Returns the final state of both sides.
 */
export async function migrate(
  pair: MigrationPair,
  options: { timeoutMs?: number; ramCheck?: boolean } = {},
): Promise<MigrationResult> {
  await pair.waitForGuest();
  const started = Date.now();
  const uri = await pair.startIncoming();
  try {
    await pair.startMigration(uri);
  } catch (error) {
    throw await pair.fail(`migrate ${uri} was refused: ${(error as Error).message}`, "source");
  }
  await pair.waitForStatuses(
    { source: ["completed"], destination: ["completed"] },
    { timeoutMs: options.timeoutMs ?? timeoutMs("migration") },
  );
  return pair.finishCompleted(uri, started, options.ramCheck ?? true);
}

/** After both sides completed: destination running, final state, RAM check. */
export async function finishCompleted(
  pair: MigrationPair,
  uri: string,
  started: number,
  ramCheck: boolean,
): Promise<MigrationResult> {
  const durationMs = Date.now() - started;
  pair.phase = "verify";
  // A destination that exited as declared (it refused what came last) has no VM to wait for.
  const destinationVm = pair.goneAsDeclared("destination")
    ? undefined
    : await pair.waitForVm("destination", (s) => s.running, "running");
  // 7.2 reports completed a moment before its VM leaves finish-migrate for postmigrate.
  if (pair.source.isRunning()) {
    await pair.waitForVm(
      "source",
      (s) => s.status !== "finish-migrate",
      "done with finish-migrate",
    );
  }
  const final = { uri, durationMs, ...(await pair.finalState("completed", destinationVm)) };
  if (!ramCheck || !pair.guest.params) return final;
  const ram = await pair.checkRam();
  if (!ram.check.ok) {
    throw await pair.fail(`guest RAM differs after migration: ${ram.check.summary}`, "destination");
  }
  return { ...final, ram };
}

/** Before migrating: the guest has started on the source (its start marker). */
export async function waitForGuest(pair: MigrationPair): Promise<void> {
  if (!pair.guest.params) return;
  pair.phase = "guest-start";
  try {
    await waitForGuestStart(pair.source, timeoutMs("guestStart"));
  } catch (error) {
    throw await pair.fail((error as Error).message, "source");
  }
}

/**
 * After a completed migration: the guest still runs on the destination, then (stopped) its
 * RAM holds the boot-block pattern exactly. Recorded in the timeline; returned, not thrown, so
 * a test can look at a failing check.
 */
export async function checkRam(pair: MigrationPair): Promise<RamIntegrity> {
  pair.phase = "ram-check";
  let ram: RamIntegrity;
  try {
    ram = await checkGuestRam(pair.destination, pair.guest, timeoutMs("guestLiveness"));
  } catch (error) {
    throw await pair.fail((error as Error).message, "destination");
  }
  pair.timeline.record("destination", "note", ram.check.summary);
  return ram;
}

/** Both sides' last snapshot, run state and MIGRATION events, for an ended migration. */
export async function finalState(
  pair: MigrationPair,
  outcome: MigrationOutcome,
  destinationVm?: StatusInfo,
): Promise<Omit<MigrationResult, "uri" | "durationMs">> {
  const sideResult = async (side: Side, vm?: StatusInfo): Promise<SideResult> => {
    const m = pair.machine(side);
    // A side that exited (a failed incoming migration ends a destination): its last words.
    const lastWords = (): SideResult => {
      const last = pair.timeline.last(side, "query-migrate")?.data ?? {};
      const text = pair.timeline.last(side, "info-migrate")?.data ?? "";
      const events = pair.migrationEvents(side);
      return { migration: last, before: last, infoMigrate: text, vm: exitedVm(m), events };
    };
    if (!m.isRunning()) return lastWords();
    try {
      const [snap, status] = await Promise.all([pair.snapshot(side), vm ?? m.queryStatus()]);
      return { ...snap, vm: status, events: pair.migrationEvents(side) };
    } catch (error) {
      // It was exiting while we asked (the destination refusing a stream ends just then).
      await Promise.race([m.exited, new Promise((r) => setTimeout(r, 1000))]);
      if (!m.isRunning()) return lastWords();
      throw error;
    }
  };
  const [source, destination] = await Promise.all([
    sideResult("source"),
    sideResult("destination", destinationVm),
  ]);
  if (pair.violations.length > 0) {
    throw await pair.fail(
      `replies broke their QEMU's own schema:\n${pair.violations.join("\n")}`,
      undefined,
    );
  }
  return { outcome, source, destination };
}
