// What a migration left on each side, for every outcome: the last snapshot (query-migrate with
// the info migrate text it brackets), the VM run state and the MIGRATION events seen.

import type { GuestDowntime } from "../guest/downtime.ts";
import type { RamIntegrity } from "../guest/guest.ts";
import type { MigrationInfo, StatusInfo } from "../qmp/qapi.ts";

export interface SideSnapshot {
  /** query-migrate read just after info migrate. */
  migration: MigrationInfo;
  infoMigrate: string;
  /** query-migrate read just before info migrate. */
  before: MigrationInfo;
}

export interface SideResult extends SideSnapshot {
  vm: StatusInfo;
  events: string[];
}

/** How a migration ended, as the test sees it. */
export type MigrationOutcome =
  | "completed"
  | "failed"
  | "cancelled"
  /** QEMU refused a command (e.g. `migrate`) with a QMP error: nothing started. */
  | "qmp-error";

export interface MigrationResult {
  outcome: MigrationOutcome;
  uri: string;
  durationMs: number;
  source: SideResult;
  destination: SideResult;
  /** The guest's RAM verified on the destination (boot-block guest, after completion). */
  ram?: RamIntegrity;
  /** The longest stretch the guest could not run across the switchover (scenario guestDowntime). */
  guestDowntime?: GuestDowntime;
  /** The refused command's QMP error, for outcome "qmp-error". */
  qmpError?: { command: string; class: string; desc: string };
}
