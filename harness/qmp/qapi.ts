// TypeScript shapes of the QAPI types the harness reads, named as in qapi/migration.json.
// Every member is optional where any QEMU from 7.2 on (or a proposed patch) may omit it:
// what a given binary really promises is answered by its own schema (query-qmp-schema).

/** MigrationStatus. QEMU adds states over time, so unknown strings are tolerated. */
export type MigrationStatus =
  | "none"
  | "setup"
  | "cancelling"
  | "cancelled"
  | "active"
  | "postcopy-active"
  | "postcopy-paused"
  | "postcopy-recover-setup"
  | "postcopy-recover"
  | "postcopy-device"
  | "completed"
  | "failing"
  | "failed"
  | "colo"
  | "pre-switchover"
  | "device"
  | "wait-unplug"
  | (string & {});

/** MigrationStats (MigrationRAMStats in newer schemas): the `ram` member of MigrationInfo. */
export interface MigrationStats {
  transferred: number;
  remaining: number;
  total: number;
  duplicate: number;
  skipped?: number; // removed in 9.1
  normal: number;
  "normal-bytes": number;
  "dirty-pages-rate"?: number;
  mbps: number;
  "dirty-sync-count"?: number;
  "postcopy-requests"?: number;
  "page-size": number;
  "multifd-bytes"?: number;
  "pages-per-second": number;
  "precopy-bytes"?: number;
  "downtime-bytes"?: number;
  "postcopy-bytes"?: number;
  "dirty-sync-missed-zero-copy"?: number;
}

export interface XBZRLECacheStats {
  "cache-size": number;
  bytes: number;
  pages: number;
  "cache-miss": number;
  "cache-miss-rate": number;
  "encoding-rate": number;
  overflow: number;
}

export interface VfioStats {
  transferred: number;
}

/** SocketAddress as query-migrate reports it (flat union on `type`). */
export interface SocketAddress {
  type: "inet" | "unix" | "vsock" | "fd" | (string & {});
  host?: string;
  port?: string;
  path?: string;
  [key: string]: unknown;
}

/** MigrationInfo: the reply of query-migrate. */
export interface MigrationInfo {
  status?: MigrationStatus;
  ram?: MigrationStats;
  remaining?: number; // 11.1: system-wide bytes left (RAM and devices)
  vfio?: VfioStats;
  "xbzrle-cache"?: XBZRLECacheStats;
  "total-time"?: number;
  "setup-time"?: number;
  "expected-downtime"?: number;
  downtime?: number;
  "cpu-throttle-percentage"?: number;
  "error-desc"?: string;
  "blocked-reasons"?: string[];
  "postcopy-blocktime"?: number;
  "postcopy-vcpu-blocktime"?: number[];
  "postcopy-latency"?: number;
  "postcopy-vcpu-latency"?: number[];
  "socket-address"?: SocketAddress[];
  "dirty-limit-throttle-time-per-round"?: number;
  "dirty-limit-ring-full-time"?: number;
  [member: string]: unknown;
}

/** MigrationCapabilityStatus, as query-migrate-capabilities lists them. */
export interface MigrationCapabilityStatus {
  capability: string;
  state: boolean;
}

/** MigrationParameters: read back with query-migrate-parameters. */
export type MigrationParameters = Record<string, unknown>;

/** VersionInfo, as in the QMP greeting and query-version. */
export interface VersionInfo {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

/** StatusInfo: the reply of query-status (the VM's run state, not the migration's). */
export interface StatusInfo {
  running: boolean;
  status: string;
  singlestep?: boolean;
}

/** A QMP event as it arrives on the wire. */
export interface QMPEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}
