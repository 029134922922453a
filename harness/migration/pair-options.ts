// What a pair is launched with, and what its waits take.

import type { GuestOptions } from "../guest/guest.ts";
import type { AccelRequest } from "../qemu/accel.ts";
import type { MigrationParameters, MigrationStatus } from "../qmp/qapi.ts";
import type { Transport, TransportKind } from "../transport/transport.ts";
import type { SideSnapshot } from "./result.ts";
import type { Side } from "./timeline.ts";

export interface SideOptions {
  binary?: string;
  /** Only this side: e.g. max-bandwidth on the source. */
  parameters?: MigrationParameters;
  /** Only this side. */
  capabilities?: Record<string, boolean>;
  ramBackingFile?: boolean;
  extraArgs?: string[];
}

export interface PairOptions {
  /** Both sides' binary unless a side names its own (cross-version pairs). */
  binary?: string;
  accel?: AccelRequest;
  /** -machine on both sides (default: the target's board; pin a versioned one across versions). */
  machineType?: string;
  /** -cpu on both sides (default: the target's, harness/qemu/machine-arch.ts). */
  cpu?: string;
  memoryMiB?: number;
  /** The guest both sides run: the boot-block guest by default, checked after migration. */
  guest?: GuestOptions;
  /** Extra guest-loading arguments (a custom guest); the default guest is then "none". */
  guestArgs?: string[];
  /** Set on both sides; `events` is always on. */
  capabilities?: Record<string, boolean>;
  /** Set on both sides. */
  parameters?: MigrationParameters;
  /**
   * Leave the source's bandwidth and downtime limit at QEMU's defaults. Otherwise a dirtying
   * guest gets CONVERGING_PARAMETERS unless the caller chose its own.
   */
  keepQemuConvergenceDefaults?: boolean;
  source?: SideOptions;
  destination?: SideOptions;
  transport?: Transport | TransportKind;
  /** tcp only: a fixed port (same as transport {kind: "tcp", port}). */
  port?: number;
  /**
   * The URI the source is given instead of the one the destination listens on (a URI
   * transport): the seam for a relay or proxy between the two, e.g. tcp to a local port that
   * forwards to the destination's.
   */
  outgoingUri?: (destinationUri: string) => string | Promise<string>;
  /**
   * A FaultProxy between the sides (tcp and unix transports): the destination listens on its
   * own address, the source is given the proxy's; `pair.proxy` breaks the stream on command.
   */
  faultProxy?: boolean;
  /** How often both sides are snapshotted while waiting, besides every event. */
  pollIntervalMs?: number;
  startTimeoutMs?: number;
  parentDir?: string;
  /** Called with every snapshot taken (live progress). */
  onSnapshot?: (side: Side, snapshot: SideSnapshot) => void;
}

/** A wait's options: a timeout (scaled by QEMU_MIGTEST_TIMEOUT_SCALE when defaulted). */
export interface WaitOptions {
  timeoutMs?: number;
}

export interface StatusWaitOptions extends WaitOptions {
  /** Statuses that end the wait with a failure (default: failed and cancelled, unless awaited). */
  failOn?: readonly MigrationStatus[];
  /** Any other reason to give up at once (e.g. a migration judged not to converge). */
  failWhen?: (s: Snapshots) => string | undefined;
}

export type Snapshots = { source: SideSnapshot; destination: SideSnapshot };
