// migrate_cancel on the source in every state of MigrationStatus, as qtest's
// cancel/src/after/<state> does: each state of the binary's own enum is classified here, by how a
// test brings the source there and what cancelling it must leave. A state the table does not
// know (a QEMU that grew its enum) is reported by name, so it cannot go untested.

/** How a test brings the source into the state before it sends migrate_cancel. */
export type CancelReach =
  /** Before `migrate`: nothing runs. */
  | "before-migrate"
  /** On the source's MIGRATION "setup" event, as qtest does (setup lasts microseconds). */
  | "on-setup-event"
  /** Held active under limits it cannot converge under. */
  | "held-active"
  /** pause-before-switchover on both sides: the source waits in pre-switchover. */
  | "pause-before-switchover"
  /** A first migrate_cancel, then the second one on the "cancelling" event. */
  | "on-cancelling-event"
  /** A first migrate_cancel, then the second one once "cancelled". */
  | "after-cancelled"
  /** After the migration completed on both sides. */
  | "after-completed"
  /** After a migration to a port nobody listens on failed. */
  | "after-failed";

export interface CancelCase {
  state: string;
  reach: CancelReach;
  /** Where the source ends: cancelled, or the state it was in (migrate_cancel is a no-op). */
  sourceEnds: "cancelled" | "unchanged";
  /** The destination: it was never told to listen, it completed, or its incoming migration failed. */
  destination: "untouched" | "completed" | "failed-or-exited";
}

/** A state no test can hold the source in here, and why. */
export interface NotReachable {
  state: string;
  reason: string;
}

type Classification = Omit<CancelCase, "state"> | { notReachable: string };

const POSTCOPY =
  "a postcopy state: migrate_cancel is refused there from QEMU 9.0 ('Postcopy migration in progress, cannot cancel', the source cannot be resumed once the destination runs); held by the postcopy suites";

/** Every state of MigrationStatus in QEMU 7.2 .. 11.1, classified. */
const TABLE: Record<string, Classification> = {
  none: { reach: "before-migrate", sourceEnds: "unchanged", destination: "untouched" },
  setup: { reach: "on-setup-event", sourceEnds: "cancelled", destination: "failed-or-exited" },
  active: { reach: "held-active", sourceEnds: "cancelled", destination: "failed-or-exited" },
  "pre-switchover": {
    reach: "pause-before-switchover",
    sourceEnds: "cancelled",
    destination: "failed-or-exited",
  },
  cancelling: {
    reach: "on-cancelling-event",
    sourceEnds: "cancelled",
    destination: "failed-or-exited",
  },
  cancelled: { reach: "after-cancelled", sourceEnds: "cancelled", destination: "failed-or-exited" },
  completed: { reach: "after-completed", sourceEnds: "unchanged", destination: "completed" },
  failed: { reach: "after-failed", sourceEnds: "unchanged", destination: "untouched" },
  device: {
    notReachable:
      "the device-state switchover after pre-switchover: it lasts as long as saving device state (microseconds here) and nothing pauses it (qtest: 'happens too fast')",
  },
  "wait-unplug": {
    notReachable: "waits for a failover (virtio-net standby) device to be unplugged; none here",
  },
  colo: { notReachable: "COLO needs the x-colo capability and a replication build" },
  failing: {
    notReachable:
      "the source tearing down after an error (QEMU 11.x) until it reports failed; nothing holds it there",
  },
  "postcopy-active": { notReachable: POSTCOPY },
  "postcopy-device": { notReachable: POSTCOPY },
  "postcopy-paused": { notReachable: POSTCOPY },
  "postcopy-recover-setup": { notReachable: POSTCOPY },
  "postcopy-recover": { notReachable: POSTCOPY },
};

export interface CancelTable {
  cases: CancelCase[];
  notReachable: NotReachable[];
  /** States of the enum this table does not know: each is a failure. */
  unclassified: string[];
}

/** The cancel cases of a binary, from its own MigrationStatus values, in the enum's order. */
export function cancelTable(migrationStatuses: readonly string[]): CancelTable {
  const table: CancelTable = { cases: [], notReachable: [], unclassified: [] };
  for (const state of migrationStatuses) {
    const c = TABLE[state];
    if (!c) table.unclassified.push(state);
    else if ("notReachable" in c) table.notReachable.push({ state, reason: c.notReachable });
    else table.cases.push({ state, ...c });
  }
  return table;
}

/** The guard: throws naming every state of the enum the table does not classify. */
export function assertEveryStateClassified(
  migrationStatuses: readonly string[],
  qemu: string,
): CancelTable {
  const table = cancelTable(migrationStatuses);
  if (table.unclassified.length > 0) {
    throw new Error(
      `${qemu}: MigrationStatus has state(s) the cancel table does not classify: ${table.unclassified.map((s) => `"${s}"`).join(", ")}; add each to harness/checks/cancel-states.ts with how a test reaches it and what migrate_cancel must leave`,
    );
  }
  return table;
}

/** Every state the table classifies as reachable (tests are declared for these). */
export function reachableStates(): CancelCase[] {
  return Object.entries(TABLE).flatMap(([state, c]) =>
    "notReachable" in c ? [] : [{ state, ...c }],
  );
}
