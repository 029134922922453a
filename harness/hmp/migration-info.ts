// MigrationInfo as HMP `info migrate` shows it: one shape for both layouts QEMU has printed.
// Members are absent when HMP printed no line for them.

import type { ApproxBytes } from "./size.ts";

export type InfoMigrateFormat = "flat" | "sectioned" | "empty";

/**
 * The `ram` part (MigrationStats) as HMP shows it. Byte quantities are ApproxBytes because HMP
 * rounds them (flat: whole KiB; sectioned: 3 significant digits); page counts and rates are exact.
 */
export interface HmpRamInfo {
  transferred?: ApproxBytes;
  remaining?: ApproxBytes;
  total?: ApproxBytes;
  pageSize?: ApproxBytes;
  /** Mbit/s as printed with two decimals. */
  mbps?: number;
  /** MigrationStats `duplicate` (sectioned: `zero=`). */
  duplicatePages?: number;
  skippedPages?: number; // flat only, removed in 9.1
  normalPages?: number;
  normalBytes?: ApproxBytes; // flat only
  precopyBytes?: ApproxBytes;
  multifdBytes?: ApproxBytes;
  postcopyBytes?: ApproxBytes;
  /** Flat: kbytes (ApproxBytes). Sectioned: the raw integer, exact. */
  downtimeBytes?: ApproxBytes | number;
  dirtySyncCount?: number;
  pagesPerSecond?: number;
  dirtyPagesRate?: number;
  postcopyRequests?: number;
  /** MigrationStats `dirty-sync-missed-zero-copy`. */
  zeroCopyFallbacks?: number;
}

/** XBZRLECacheStats as HMP shows it (flat: always; sectioned: only with `-a`). */
export interface HmpXbzrleInfo {
  cacheSize?: number;
  /** Flat prints kbytes, sectioned the exact count. */
  transferred?: ApproxBytes;
  pages?: number;
  cacheMiss?: number;
  cacheMissRate?: number;
  encodingRate?: number;
  overflow?: number;
}

/** Block migration (flat format, QEMU <= 9.0). */
export interface HmpDiskInfo {
  transferred?: ApproxBytes;
  remaining?: ApproxBytes;
  total?: ApproxBytes;
}

/** Old compression statistics (flat format, QEMU <= 9.0). */
export interface HmpCompressionInfo {
  pages?: number;
  busy?: number;
  busyRate?: number;
  compressedSize?: ApproxBytes;
  compressionRate?: number;
}

export interface HmpLatencyBucket {
  from: string;
  to: string;
  count: number;
}

/** MigrationInfo as far as HMP `info migrate` shows it. Members are absent when HMP printed no line. */
export interface HmpMigrationInfo {
  format: InfoMigrateFormat;
  status?: string;
  errorDesc?: string;
  totalTimeMs?: number;
  setupTimeMs?: number;
  expectedDowntimeMs?: number;
  downtimeMs?: number;
  /** 11.1+ system-wide remaining bytes (`Remaining:`). */
  remaining?: ApproxBytes;
  ram?: HmpRamInfo;
  vfioTransferred?: ApproxBytes;
  blockedReasons?: string[];
  /** URIs as QEMU prints them, e.g. "tcp:127.0.0.1:4444". */
  socketAddresses?: string[];
  globals?: Record<string, string>;
  xbzrle?: HmpXbzrleInfo;
  disk?: HmpDiskInfo;
  compression?: HmpCompressionInfo;
  cpuThrottlePercentage?: number;
  dirtyLimitThrottleTimeUs?: number;
  dirtyLimitRingFullTimeUs?: number;
  postcopyBlocktimeMs?: number;
  postcopyVcpuBlocktimeMs?: number[];
  /** Values as printed; the unit QEMU prints in the label is kept in `postcopyLatencyUnit`. */
  postcopyLatency?: number;
  postcopyNonVcpuLatency?: number;
  postcopyVcpuLatency?: number[];
  postcopyLatencyUnit?: string;
  postcopyLatencyDistribution?: HmpLatencyBucket[];
  /** Sectioned text with a `Globals:` block, i.e. `info migrate -a`: the `-a`-only lines were printed. */
  showsAll?: boolean;
  /** Every line the parser did not understand, verbatim. A correct parse of known QEMU output has none. */
  unknownLines: string[];
}
