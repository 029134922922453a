// The migration capabilities and parameters a scenario may name, as QAPI spells them (union of
// QEMU 7.2 to 11.1's schemas), with their JSON types: a misspelt name or a wrong value type is a
// compile error. Whether the QEMU under test has one is asked of that QEMU at run time.

/** MigrationCapability. */
export type MigrationCapability =
  | "xbzrle"
  | "rdma-pin-all"
  | "auto-converge"
  | "zero-blocks"
  | "compress"
  | "events"
  | "postcopy-ram"
  | "x-colo"
  | "release-ram"
  | "block"
  | "return-path"
  | "pause-before-switchover"
  | "multifd"
  | "dirty-bitmaps"
  | "postcopy-blocktime"
  | "late-block-activate"
  | "x-ignore-shared"
  | "validate-uuid"
  | "background-snapshot"
  | "zero-copy-send"
  | "postcopy-preempt"
  | "switchover-ack"
  | "dirty-limit"
  | "mapped-ram";

export type MigrationCapabilities = Partial<Record<MigrationCapability, boolean>>;

/** MigrateSetParameters, member by member. */
export interface MigrateSetParameters {
  "announce-initial"?: number;
  "announce-max"?: number;
  "announce-rounds"?: number;
  "announce-step"?: number;
  "compress-level"?: number;
  "compress-threads"?: number;
  "compress-wait-thread"?: boolean;
  "decompress-threads"?: number;
  "throttle-trigger-threshold"?: number;
  "cpu-throttle-initial"?: number;
  "cpu-throttle-increment"?: number;
  "cpu-throttle-tailslow"?: boolean;
  "tls-creds"?: string;
  "tls-hostname"?: string;
  "tls-authz"?: string;
  /** Bytes per second. */
  "max-bandwidth"?: number;
  /** Milliseconds. */
  "downtime-limit"?: number;
  "x-checkpoint-delay"?: number;
  "block-incremental"?: boolean;
  "multifd-channels"?: number;
  "xbzrle-cache-size"?: number;
  "max-postcopy-bandwidth"?: number;
  "max-cpu-throttle"?: number;
  "multifd-compression"?: "none" | "zlib" | "zstd" | "qpl" | "uadk" | "qatzip";
  "multifd-zlib-level"?: number;
  "multifd-zstd-level"?: number;
  "block-bitmap-mapping"?: unknown[];
  "avail-switchover-bandwidth"?: number;
  "multifd-qatzip-level"?: number;
  "x-vcpu-dirty-limit-period"?: number;
  "vcpu-dirty-limit"?: number;
  mode?: "normal" | "cpr-reboot" | "cpr-transfer" | "cpr-exec";
  "zero-page-detection"?: "none" | "legacy" | "multifd";
  "direct-io"?: boolean;
  "x-rdma-chunk-size"?: number;
  "cpr-exec-command"?: string[];
}

export type MigrationParameterName = keyof MigrateSetParameters;
