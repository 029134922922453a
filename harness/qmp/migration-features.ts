// What a QEMU's schema says about its migration: probes that look at structure, so a patched
// development build is recognised by what it declares, never by its version number.

import type { QmpSchema } from "./schema.ts";

/** MigrationStats members that only make sense on the source (destination-ram-stats.patch). */
export const SOURCE_ONLY_RAM_STATS: readonly string[] = [
  "dirty-sync-count",
  "precopy-bytes",
  "downtime-bytes",
  "postcopy-bytes",
  "multifd-bytes",
  "postcopy-requests",
  "dirty-sync-missed-zero-copy",
  "dirty-pages-rate",
];

export interface MigrationFeatures {
  /** MigrationInfo has a top-level `remaining` (system-wide-remaining patch, 11.1). */
  topLevelRemaining: boolean;
  /**
   * The source-only MigrationStats members are optional, as destination-ram-stats.patch makes
   * them, so a destination may report `ram` without them.
   */
  destinationRamStats: boolean;
  migrationInfoMembers: string[];
  migrationStatsMembers: { name: string; optional: boolean }[];
  /** Values of MigrationCapability, via migrate-set-capabilities' argument. */
  capabilities: string[];
  /** Members of migrate-set-parameters' argument. */
  parameters: string[];
  /** Values of MigrationStatus, via MigrationInfo's `status`. */
  migrationStatuses: string[];
  migrateHasChannels: boolean;
  migrateIncomingHasExitOnError: boolean;
}

export function migrationFeatures(schema: QmpSchema): MigrationFeatures {
  const info = schema.typeOf("query-migrate", "ret");
  const infoMembers = info ? schema.objectMembers(info) : [];
  const stats = schema.memberPath(info, ["ram"]);
  const statsMembers = stats ? schema.objectMembers(stats) : [];
  const sourceOnly = statsMembers.filter((m) => SOURCE_ONLY_RAM_STATS.includes(m.name));
  const capability = schema.memberPath(schema.typeOf("migrate-set-capabilities", "arg"), [
    "capabilities",
    "capability",
  ]);
  const status = schema.memberPath(info, ["status"]);
  const params = schema.typeOf("migrate-set-parameters", "arg");
  const hasArg = (command: string, member: string) => {
    const arg = schema.typeOf(command, "arg");
    return arg !== undefined && schema.member(arg, member) !== undefined;
  };
  return {
    topLevelRemaining: infoMembers.some((m) => m.name === "remaining"),
    destinationRamStats: sourceOnly.length > 0 && sourceOnly.every((m) => m.optional),
    migrationInfoMembers: infoMembers.map((m) => m.name),
    migrationStatsMembers: statsMembers.map(({ name, optional }) => ({ name, optional })),
    capabilities: capability ? schema.enumValues(capability) : [],
    parameters: params ? schema.objectMembers(params).map((m) => m.name) : [],
    migrationStatuses: status ? schema.enumValues(status) : [],
    migrateHasChannels: hasArg("migrate", "channels"),
    migrateIncomingHasExitOnError: hasArg("migrate-incoming", "exit-on-error"),
  };
}
