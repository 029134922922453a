// A migration scenario, declared: what each side is configured with, how the migration travels,
// whether the guest runs during it, whether it is held active for a number of passes, and what
// the test expects at the end. On the model of qtest's MigrateCommon, but typed: a misspelt
// capability or a wrong outcome is a compile error, and hooks get the pair with its recorded verbs.

import type { GuestOptions } from "../guest/guest.ts";
import type { ExpectedExit } from "../migration/exit-expectations.ts";
import type { MigrationPair } from "../migration/pair.ts";
import type { MigrationResult } from "../migration/result.ts";
import type { Side } from "../migration/timeline.ts";
import type { Transport } from "../transport/transport.ts";
import type {
  MigrateSetParameters,
  MigrationCapabilities,
  MigrationCapability,
  MigrationParameterName,
} from "./qapi-names.ts";

/** Per side, or for both at once (a side's own entries win). */
export interface PerSide<T> {
  both?: T;
  source?: T;
  destination?: T;
}

/** What the test expects the migration to end in. */
export type ExpectedOutcome =
  | { status: "completed" }
  /** The source ends `failed`; `errorDesc` must match its error-desc when given. */
  | { status: "failed"; errorDesc?: RegExp }
  /** The source ends `cancelled` (a hook cancels it). */
  | { status: "cancelled" }
  /** QEMU refuses `command` with this QMP error class and a desc matching `desc`. */
  | { status: "qmp-error"; command: "migrate" | "migrate-incoming"; class: string; desc: RegExp };

/** Hold the migration active until the source has done `passes` dirty-bitmap syncs, then release. */
export interface Hold {
  passes: number;
  /**
   * The source's limits while held (default: half the guest's dirty rate in bytes per second and
   * a 1 ms downtime limit, under which it cannot converge). Released with CONVERGING_PARAMETERS.
   */
  parameters?: Pick<MigrateSetParameters, "max-bandwidth" | "downtime-limit">;
}

export interface IncomingOptions {
  /** false: the destination survives a failed incoming migration (QEMU 9.1+). */
  exitOnError?: boolean;
}

export interface ScenarioHooks {
  /** After both sides are configured and the guest runs, before `migrate-incoming`. */
  beforeMigrate?(pair: MigrationPair): Promise<void> | void;
  /** Once the destination listens, before `migrate`. */
  afterIncoming?(pair: MigrationPair): Promise<void> | void;
  /** While held active (needs `hold`), after the passes and before the release. */
  whileHeld?(pair: MigrationPair): Promise<void> | void;
  /** In postcopy (needs `postcopy`): both sides are postcopy-active, pages still on the source. */
  whilePostcopy?(pair: MigrationPair): Promise<void> | void;
  /** Once `migrate` is accepted (for a test that drives the middle itself, e.g. cancel). */
  afterStart?(pair: MigrationPair): Promise<void> | void;
  /** After the outcome was reached and checked, with its result. */
  afterMigrate?(pair: MigrationPair, result: MigrationResult): Promise<void> | void;
}

export interface Scenario {
  /**
   * A reason to skip on this pair (e.g. its schema lacks the feature under test), asked after
   * launch and before anything is configured; undefined runs the scenario.
   */
  skipIf?(pair: MigrationPair): string | undefined;
  /** Guest RAM in MiB (default 128). */
  memoryMiB?: number;
  /** The boot-block guest by default (paced, checked after a completed migration). */
  guest?: GuestOptions;
  /** Guest-loading arguments of a custom guest (e.g. a Linux kernel); the guest is then "none". */
  guestArgs?: string[];
  /** Further QEMU arguments (devices, objects, chardevs). */
  qemuArgs?: PerSide<string[]>;
  transport?: Transport;
  /**
   * The URI the source is given instead of the destination's (URI transports): a relay or proxy
   * the test puts between the two sides.
   */
  outgoingUri?: (destinationUri: string) => string | Promise<string>;
  /** A FaultProxy between the sides (`pair.proxy`): cut, stall, throttle, delay, flip a byte. */
  faultProxy?: boolean;
  /**
   * Measure guest-visible downtime on completion (result.guestDowntime): the source's RAM goes
   * on a shared file too, and both sides' progress words are read across the switchover.
   */
  guestDowntime?: boolean;
  /** Guest running during migration (default true); false stops the source first, as qtest does. */
  live?: boolean;
  capabilities?: PerSide<MigrationCapabilities>;
  parameters?: PerSide<MigrateSetParameters>;
  /**
   * Capabilities and parameters the test cannot do without: a QEMU lacking one fails the test.
   * Any other one a QEMU lacks skips the test with that reason.
   */
  required?: readonly (MigrationCapability | MigrationParameterName)[];
  hold?: Hold;
  /**
   * End the held precopy (needs `hold`) with migrate-start-postcopy instead of releasing it, and
   * wait for both sides in postcopy-active before the whilePostcopy hook. The test names the
   * postcopy capabilities itself (postcopy-ram on both sides, blocktime, preempt...).
   */
  postcopy?: true;
  /** migrate-incoming's options (or chosen from the pair, e.g. by what its schema offers). */
  incoming?: IncomingOptions | ((pair: MigrationPair) => IncomingOptions);
  /** Default: completed. */
  expect?: ExpectedOutcome;
  /**
   * Waiting for completion gives up, saying why, once the amount left to send has not fallen
   * over this many dirty-bitmap syncs (default DEFAULT_STALLED_PASSES); "wait" waits for the
   * timeout whatever happens.
   */
  convergence?: { stalledPasses: number } | "wait";
  /** QEMUs that exit by themselves in this scenario (qtest_set_expected_status). */
  exits?: Partial<Record<Side, ExpectedExit>>;
  hooks?: ScenarioHooks;
  /** Verify the guest's RAM after a completed migration (default true with the boot-block guest). */
  ramCheck?: boolean;
  /** The migration's own timeout, ms (default: timeouts table, scaled). */
  timeoutMs?: number;
  /** Snapshot interval while waiting, ms (default 100). */
  pollIntervalMs?: number;
  machineType?: string;
  /** -cpu on both sides (default: the target's; pin a named model across versions). */
  cpu?: string;
  /** Per-side binaries (cross-version); otherwise the binary the test runs on. */
  binaries?: { source?: string; destination?: string };
}

/** Where a scenario runs: the binary and accelerator the fixture hands each test. */
export interface Placement {
  binary: string;
  accel: import("../qemu/accel.ts").AccelRequest;
  parentDir?: string;
}

/** The QEMU under test lacks something the scenario names (and did not declare required). */
export class ScenarioUnsupported extends Error {
  override name = "ScenarioUnsupported";
}

/** The scenario cannot run as declared: a required feature is missing, or the outcome is wrong. */
export class ScenarioError extends Error {
  override name = "ScenarioError";
}
