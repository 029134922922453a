// The boot-block guest's dirty rate as the harness speaks it (MiB/s of dirtied 4 KiB pages) and
// as the guest paces it (pages per second), and the check that a guest reached the rate it was
// asked for. A rate is paced in time, so it means the same under TCG and KVM.

import { BOOTBLOCK_LAYOUT } from "./bootblock.ts";

const PAGES_PER_MIB = (1024 * 1024) / BOOTBLOCK_LAYOUT.pageSize;

/**
 * Dirty rate of a pair's guest when its options name none: slow enough that every QEMU under
 * test converges at the pair's default 1 GiB/s in a pass or two, fast enough that a 100 MiB
 * range is dirtied again every few seconds, and reached under TCG and software KVM alike.
 */
export const DEFAULT_DIRTY_RATE_MIBPS = 32;

/** Above this a rate is not a dirty rate but a unit mistake (bytes/s passed as MiB/s). */
export const MAX_DIRTY_RATE_MIBPS = 1024 * 1024;

/** How far a measured rate may be from the asked one when nothing else is said: ±15%. */
export const DEFAULT_RATE_TOLERANCE = 0.15;

/**
 * Pages per second for `mibps` (0: unpaced). A negative, NaN or infinite rate, one above 1 TiB/s
 * and one below a page per second are RangeErrors: they fail when the guest is prepared.
 */
export function dirtyRatePagesPerSecond(mibps: number): number {
  if (typeof mibps !== "number" || !Number.isFinite(mibps) || mibps < 0) {
    throw new RangeError(
      `boot-block dirtyRateMiBps must be a finite number >= 0 (MiB/s; 0 = unpaced), got ${mibps}`,
    );
  }
  if (mibps > MAX_DIRTY_RATE_MIBPS) {
    throw new RangeError(
      `boot-block dirtyRateMiBps ${mibps} is above ${MAX_DIRTY_RATE_MIBPS} MiB/s (1 TiB/s): the rate is in MiB/s, not bytes/s`,
    );
  }
  const pages = Math.round(mibps * PAGES_PER_MIB);
  if (mibps > 0 && pages === 0) {
    throw new RangeError(
      `boot-block dirtyRateMiBps ${mibps} is below one 4 KiB page per second (${1 / PAGES_PER_MIB} MiB/s); use 0 for unpaced`,
    );
  }
  return pages;
}

export function pagesPerSecondToMiBps(pagesPerSecond: number): number {
  return pagesPerSecond / PAGES_PER_MIB;
}

/** A rate measured on a running guest (measureGuestDirtyRate). */
export interface MeasuredDirtyRate {
  /** The machine and accelerator it ran on, for messages. */
  machine: string;
  accel: string;
  /** What the guest was asked for (its status block), MiB/s; 0: unpaced. */
  askedMiBps: number;
  pagesPerSecond: number;
  bytesPerSecond: number;
  mibPerSecond: number;
  /** Host time the sample covered. */
  sampleMs: number;
  /** Times the guest was too late to catch up during the sample (host or vCPU stalled). */
  scheduleRestarts: number;
}

export class GuestRateError extends Error {
  override name = "GuestRateError";
  constructor(
    message: string,
    readonly askedMiBps: number,
    readonly measured: MeasuredDirtyRate,
  ) {
    super(message);
  }
}

function mibps(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

/**
 * Throw a GuestRateError unless `measured` is within ±`tolerance` of `askedMiBps`. Below it the
 * guest could not reach the rate on this host and accelerator; above it the pacing is broken.
 */
export function expectDirtyRateReached(
  askedMiBps: number,
  measured: MeasuredDirtyRate,
  tolerance: number = DEFAULT_RATE_TOLERANCE,
): void {
  if (!(tolerance >= 0 && tolerance < 1)) {
    throw new RangeError(`dirty rate tolerance must be in [0, 1), got ${tolerance}`);
  }
  const got = measured.mibPerSecond;
  const where = `on ${measured.accel} (${measured.machine}, ${Math.round(measured.sampleMs)} ms sample)`;
  const band = `±${Math.round(tolerance * 100)}%`;
  if (got < askedMiBps * (1 - tolerance)) {
    throw new GuestRateError(
      `asked ${mibps(askedMiBps)} MiB/s, the guest reached ${mibps(got)} MiB/s ${where}: beyond what this vCPU can dirty (${band} allowed); ask for less`,
      askedMiBps,
      measured,
    );
  }
  if (got > askedMiBps * (1 + tolerance)) {
    throw new GuestRateError(
      `asked ${mibps(askedMiBps)} MiB/s, the guest dirtied ${mibps(got)} MiB/s ${where}: faster than paced (${band} allowed)`,
      askedMiBps,
      measured,
    );
  }
}
