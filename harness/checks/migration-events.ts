// Which sequences of MIGRATION event statuses a side may legally go through, per outcome.
// QEMU adds states over releases (device in the switchover of newer QEMU, failing in 11.x), so a
// sequence is checked against the legal paths AND against the MigrationStatus enum of the binary
// that emitted it: a state is accepted only where that binary's own schema declares it.

/**
 * Postcopy, once started: postcopy-active (11.1 passes through postcopy-device first), then any
 * pauses and recoveries (double failures too); a 7.2 destination listening again after
 * migrate-recover reports setup.
 */
const POSTCOPY =
  "(( postcopy-device)? postcopy-active( postcopy-paused( setup)?| postcopy-recover-setup| postcopy-recover| postcopy-active)*)?";

/** Legal paths as regular expressions over space-separated statuses. */
const PATHS: Record<string, RegExp> = {
  // wait-unplug: failover devices; pre-switchover: the capability; device: switchover of
  // device state (10.x on); postcopy states when postcopy was started.
  "source completed": new RegExp(
    `^setup (wait-unplug )?active( pre-switchover)?( device)?${POSTCOPY}( postcopy-device)? completed$`,
  ),
  "destination completed": new RegExp(`^setup active${POSTCOPY}( postcopy-device)? completed$`),
  "source failed":
    /^setup( wait-unplug)?( active( pre-switchover)?( device)?( postcopy-active)?)?( failing)? failed$/,
  // An incoming migration that broke (source cancelled or gone, stream refused).
  "destination failed": /^(setup )?(active )?failed$/,
  // A second migrate_cancel while cancelling sets cancelling again, and QEMU emits the event
  // again (migration_cancel's cmpxchg loop: seen on 11.1).
  "source cancelled":
    /^setup( wait-unplug)?( active( pre-switchover)?( device)?)?( cancelling)+ cancelled$/,
};

export type Outcome = "completed" | "failed" | "cancelled";

/**
 * Problems with one side's MIGRATION event statuses (empty when legal). `knownStatuses` is the
 * MigrationStatus enum from that binary's query-qmp-schema.
 */
export function checkMigrationEvents(
  side: "source" | "destination",
  outcome: Outcome,
  statuses: readonly string[],
  knownStatuses: readonly string[],
): string[] {
  const problems: string[] = [];
  const unknown = statuses.filter((s) => !knownStatuses.includes(s));
  if (unknown.length > 0) {
    problems.push(
      `${side} emitted MIGRATION statuses its schema's MigrationStatus does not declare: ${unknown.join(", ")}`,
    );
  }
  const path = PATHS[`${side} ${outcome}`];
  if (!path) {
    problems.push(`no legal path is known for a ${side} that ends ${outcome}`);
  } else if (!path.test(statuses.join(" "))) {
    problems.push(
      `${side} MIGRATION events ${statuses.join(" -> ") || "(none)"} are not a legal path to ${outcome} (expected ${path.source})`,
    );
  }
  return problems;
}
