// Convergence control for precopy with a dirtying guest, the way QEMU's own migration tests do
// it: a migration provably stays active (dirty-sync-count keeps rising) under a low bandwidth
// and a tiny downtime limit, and completes at once when both are raised.

import type { MigrationParameters } from "../qmp/qapi.ts";

import { MiB } from "../util/units.ts";

/** Completes after the next pass: whatever is dirty fits in a 30 s downtime at 1 GiB/s. */
export const CONVERGING_PARAMETERS: MigrationParameters = {
  "max-bandwidth": 1024 * MiB,
  "downtime-limit": 30_000,
};

/** Whether the caller chose the bandwidth or the downtime limit themselves. */
export function choosesConvergence(parameters: MigrationParameters | undefined): boolean {
  return (
    parameters !== undefined && ("max-bandwidth" in parameters || "downtime-limit" in parameters)
  );
}

/** A held migration's source limits when the scenario names none: half the dirty rate, 1 ms. */
export function holdParameters(dirtyRateMiBps: number | undefined): MigrationParameters {
  // An unpaced guest dirties far faster than 32 MiB/s on any host.
  const bandwidth = dirtyRateMiBps ? Math.max(1, dirtyRateMiBps / 2) * MiB : 32 * MiB;
  return { "max-bandwidth": Math.round(bandwidth), "downtime-limit": 1 };
}
