// Every wait the harness does has a default here, in seconds of wall time, and one knob scales
// them all for slow runners (an emulated architecture, a loaded CI host): never loop counts.
//
//   QEMU_MIGTEST_TIMEOUT_SCALE=3 npm test    # every timeout three times as long

/** Defaults in milliseconds, before scaling. */
export const DEFAULT_TIMEOUTS = {
  /** A QEMU process until its QMP monitor greets. */
  qemuStart: 20_000,
  /** The guest's start marker on the source's serial console. */
  guestStart: 20_000,
  /** The guest's progress word moving on the destination after migration. */
  guestLiveness: 10_000,
  /** A migration from `migrate` until both sides reach their final state. */
  migration: 60_000,
  /** Reaching N dirty-bitmap syncs while a migration is held active. */
  hold: 60_000,
  /** Completion after a held migration's limits are raised. */
  release: 30_000,
  /** A migration that must fail or be cancelled, until its final state. */
  failure: 30_000,
  /** A VM run state (query-status) becoming what is expected. */
  vmState: 10_000,
  /** One QMP event. */
  event: 30_000,
} as const;

export type TimeoutName = keyof typeof DEFAULT_TIMEOUTS;

export class TimeoutScaleError extends Error {
  override name = "TimeoutScaleError";
}

/** QEMU_MIGTEST_TIMEOUT_SCALE: a positive number, 1 when unset. */
export function timeoutScale(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.QEMU_MIGTEST_TIMEOUT_SCALE;
  if (raw === undefined || raw === "") return 1;
  const scale = Number(raw);
  if (!Number.isFinite(scale) || scale <= 0) {
    throw new TimeoutScaleError(
      `QEMU_MIGTEST_TIMEOUT_SCALE must be a positive number (e.g. 2 on a slow runner), not "${raw}"`,
    );
  }
  return scale;
}

/** The scaled default for one wait, or a caller's own milliseconds scaled the same way. */
export function timeoutMs(
  what: TimeoutName | number,
  env: NodeJS.ProcessEnv = process.env,
): number {
  const base = typeof what === "number" ? what : DEFAULT_TIMEOUTS[what];
  return Math.round(base * timeoutScale(env));
}
