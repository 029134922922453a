// The boot-block guest's live progress: its status block at RAM base + 0x7000 (pass counter, pages written,
// TSC of the last write, calibrated TSC Hz, asked rate), read from a running or stopped machine,
// and its dirty rate measured from the pages-written word over host time.

import type { Machine } from "../qemu/machine.ts";
import { hex } from "../util/text.ts";
import { BOOTBLOCK_LAYOUT, bootblockArch } from "./bootblock.ts";
import { type MeasuredDirtyRate, pagesPerSecondToMiBps } from "./dirty-rate.ts";

export interface GuestProgress {
  passCounter: number;
  /** Pages written since the start marker; moves on every page, so it proves the vCPU runs. */
  pagesWritten: number;
  /** Guest TSC at the last page write (bigint: a host TSC passes 2^53 after weeks of uptime). */
  progressTsc: bigint;
  /** The guest's TSC frequency measured against the PIT; 0 before the start marker. */
  tscHz: number;
  /** The asked rate; 0: unpaced. */
  pagesPerSecond: number;
  askedMiBps: number;
  /** Times the guest fell too far behind its schedule and restarted it (no burst). */
  scheduleRestarts: number;
  /** Spread of the PIT calibration rounds, (max - min) / median, in parts per million. */
  calibrationSpreadPpm: number;
  /** PIT rounds rejected because the vCPU saw an edge too late (host busy at boot). */
  calibrationRejected: number;
}

export class GuestProgressError extends Error {
  override name = "GuestProgressError";
}

/**
 * The status block in `mem` (guest-physical `base` onwards); undefined when the guest has not
 * written its magic yet. A block of another layout version is an error: image and harness differ.
 */
export function parseGuestProgress(
  mem: Uint8Array,
  base: number,
  statusAddress: number = BOOTBLOCK_LAYOUT.statusAddress,
): GuestProgress | undefined {
  const { statusMagic, statusSize, statusFields: F } = BOOTBLOCK_LAYOUT;
  const at = statusAddress - base;
  if (at < 0 || at + statusSize > mem.length) {
    throw new RangeError(
      `status block ${hex(statusAddress)}..${hex(statusAddress + statusSize)} is not inside the ${mem.length} bytes read from ${hex(base)}`,
    );
  }
  const block = mem.subarray(at, at + statusSize);
  if (new TextDecoder().decode(block.subarray(0, statusMagic.length)) !== statusMagic) {
    return undefined;
  }
  const view = new DataView(block.buffer, block.byteOffset, statusSize);
  const version = view.getUint32(F.version, true);
  if (version !== BOOTBLOCK_LAYOUT.statusVersion) {
    throw new GuestProgressError(
      `boot-block status block at ${hex(statusAddress)} has layout version ${version}, expected ${BOOTBLOCK_LAYOUT.statusVersion} (rebuild images/bootblock.bin with scripts/build-images)`,
    );
  }
  const u64 = (offset: number) => Number(view.getBigUint64(offset, true));
  const pagesPerSecond = u64(F.pagesPerSecond);
  return {
    passCounter: u64(F.passCounter),
    pagesWritten: u64(F.pagesWritten),
    progressTsc: view.getBigUint64(F.progressTsc, true),
    tscHz: u64(F.tscHz),
    pagesPerSecond,
    askedMiBps: pagesPerSecondToMiBps(pagesPerSecond),
    scheduleRestarts: u64(F.scheduleRestarts),
    calibrationSpreadPpm: u64(F.calibrationSpreadPpm),
    calibrationRejected: view.getUint32(F.calibrationRejected, true),
  };
}

/**
 * The status block of the guest on `m`, running or stopped: read in place from its shared RAM
 * file, or through pmemsave without one.
 */
export async function readGuestProgress(m: Machine): Promise<GuestProgress> {
  const { statusSize } = BOOTBLOCK_LAYOUT;
  const { statusAddress } = bootblockArch(m.arch);
  const progress = parseGuestProgress(
    await m.readGuestMemory(statusAddress, statusSize),
    statusAddress,
    statusAddress,
  );
  if (!progress) {
    throw new GuestProgressError(
      `${m.name}: no boot-block status block ("${BOOTBLOCK_LAYOUT.statusMagic}") at ${hex(statusAddress)} in guest RAM`,
    );
  }
  return progress;
}

const now = () => performance.now();

/** One read, timed at the middle of its host-side bracket. */
async function timedRead(m: Machine): Promise<{ at: number; progress: GuestProgress }> {
  const before = now();
  const progress = await readGuestProgress(m);
  return { at: (before + now()) / 2, progress };
}

/** A dirty-rate sample with the two status blocks it was taken from. */
export interface GuestRateSample extends MeasuredDirtyRate {
  first: GuestProgress;
  last: GuestProgress;
}

/**
 * The dirty rate of the guest running on `m`: pages-written delta over `sampleMs` of host time.
 * The guest must have started (waitForGuestStart).
 */
export async function measureGuestDirtyRate(m: Machine, sampleMs = 1000): Promise<GuestRateSample> {
  if (!(sampleMs > 0)) throw new RangeError(`sampleMs must be positive, got ${sampleMs}`);
  const a = await timedRead(m);
  await new Promise((r) => setTimeout(r, sampleMs));
  const b = await timedRead(m);
  const pages = b.progress.pagesWritten - a.progress.pagesWritten;
  if (pages < 0) {
    throw new GuestProgressError(
      `${m.name}: pages written went from ${a.progress.pagesWritten} to ${b.progress.pagesWritten}: the guest restarted`,
    );
  }
  const seconds = (b.at - a.at) / 1000;
  const pagesPerSecond = pages / seconds;
  const bytesPerSecond = pagesPerSecond * BOOTBLOCK_LAYOUT.pageSize;
  return {
    machine: m.name,
    accel: m.accel.accel,
    askedMiBps: b.progress.askedMiBps,
    pagesPerSecond,
    bytesPerSecond,
    mibPerSecond: bytesPerSecond / (1024 * 1024),
    sampleMs: b.at - a.at,
    scheduleRestarts: b.progress.scheduleRestarts - a.progress.scheduleRestarts,
    first: a.progress,
    last: b.progress,
  };
}
