// The guest a migration pair runs, and the proof that nothing was lost: the boot-block guest
// (images/bootblock.bin) dirties one byte per page of a range pass after pass at a rate paced in
// time; after the migration the destination must still be running it (its pages-written word
// moves), and once stopped its RAM must hold the pattern exactly (ram-check.ts).

import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { AccelRequest } from "../qemu/accel.ts";
import type { QemuArch } from "../qemu/arch.ts";
import { probeQemuBinary } from "../qemu/binary.ts";
import { defaultParentDir, Machine } from "../qemu/machine.ts";
import { hex } from "../util/text.ts";
import { timeoutMs as scaledTimeout } from "../util/timeouts.ts";
import {
  BOOTBLOCK_ERRORS,
  BOOTBLOCK_LAYOUT,
  type BootblockBoot,
  type BootblockParams,
  bootblockArch,
  bootblockQemuArgs,
  parseBootblockSerial,
  validateBootblockParams,
  writeBootblockImage,
} from "./bootblock.ts";
import {
  DEFAULT_DIRTY_RATE_MIBPS,
  dirtyRatePagesPerSecond,
  type MeasuredDirtyRate,
} from "./dirty-rate.ts";
import { type GuestProgress, measureGuestDirtyRate, readGuestProgress } from "./progress.ts";
import { checkBootblockRamFile, type RamCheckResult } from "./ram-check.ts";

export {
  DEFAULT_DIRTY_RATE_MIBPS,
  expectDirtyRateReached,
  GuestRateError,
  type MeasuredDirtyRate,
} from "./dirty-rate.ts";
export { type GuestProgress, measureGuestDirtyRate, readGuestProgress } from "./progress.ts";

export type GuestOptions =
  | {
      kind: "bootblock";
      /** End of the dirtied range in MiB of RAM (default: guest RAM minus 16 MiB). */
      rangeEndMiB?: number;
      /**
       * MiB/s of dirtied pages (1 page = 4 KiB), paced on the guest's own clock (x86: TSC
       * calibrated on the PIT; aarch64: the generic timer), so the same under TCG and KVM.
       * 0: as fast as the vCPU can. Default DEFAULT_DIRTY_RATE_MIBPS (32).
       */
      dirtyRateMiBps?: number;
      /** Raw knob: busy-loop iterations after each page write, on top of the pacing. */
      pageSpin?: number;
      /** Raw knob: busy-loop iterations after each pass. */
      passSpin?: number;
      boot?: BootblockBoot;
    }
  /** No guest code: firmware only (SeaBIOS finds nothing to boot). Nothing to check. */
  | { kind: "none" };

export interface PreparedGuest {
  /** The options, with the boot-block's dirtyRateMiBps filled in when it was left out. */
  options: GuestOptions;
  /** QEMU arguments that load it; the same on both sides. */
  args: string[];
  params?: Required<BootblockParams>;
  /** The target the image was built for: both sides must emulate it. */
  arch: QemuArch;
}

export class GuestError extends Error {
  override name = "GuestError";
}

/**
 * Write the guest's image for `arch` (if any) into `dir` and say how to boot it. A bad rate
 * (negative, NaN, not in MiB/s) is a RangeError here, before any QEMU starts.
 */
export async function prepareGuest(
  options: GuestOptions,
  memoryMiB: number,
  dir: string,
  arch: QemuArch = "x86_64",
): Promise<PreparedGuest> {
  if (options.kind === "none") return { options, args: [], arch };
  const ramBase = bootblockArch(arch).ramBase;
  const rangeEndMiB = options.rangeEndMiB ?? Math.max(2, memoryMiB - 16);
  if (rangeEndMiB > memoryMiB) {
    throw new GuestError(
      `boot-block range end ${rangeEndMiB} MiB is beyond the guest's ${memoryMiB} MiB of RAM; lower rangeEndMiB or raise memoryMiB`,
    );
  }
  const dirtyRateMiBps = options.dirtyRateMiBps ?? DEFAULT_DIRTY_RATE_MIBPS;
  const params = validateBootblockParams(
    {
      rangeEnd: ramBase + rangeEndMiB * 1024 * 1024,
      dirtyRatePagesPerSecond: dirtyRatePagesPerSecond(dirtyRateMiBps),
      pageSpin: options.pageSpin ?? 0,
      passSpin: options.passSpin ?? 0,
    },
    arch,
  );
  const image = join(dir, "bootblock.bin");
  await writeBootblockImage(params, image, arch);
  return {
    options: { ...options, dirtyRateMiBps },
    args: bootblockQemuArgs(image, { boot: options.boot ?? "bios", arch }),
    params,
    arch,
  };
}

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | undefined | Promise<T | undefined>,
  intervalMs = 5,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new GuestError(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The serial state of `m`, or a GuestError for a guest-reported error or an exited QEMU. */
function serialState(m: Machine) {
  const state = parseBootblockSerial(m.serialText());
  if (state.error) {
    const meaning = BOOTBLOCK_ERRORS[state.error];
    // The fault marker's next line is the guest's own account of it.
    const detail = m.serialText().split(`${state.error}\n`)[1]?.split("\n")[0];
    throw new GuestError(
      `${m.name}: the boot-block guest reported ${state.error}${meaning ? `: ${meaning}` : ""}${detail ? ` (${detail})` : ""}`,
    );
  }
  if (!m.isRunning()) {
    throw new GuestError(
      `${m.name}: QEMU exited (${JSON.stringify(m.exit ?? {})}) while waiting for the boot-block guest`,
    );
  }
  return state;
}

/**
 * The guest on `m` has started: its start marker is on the serial console, so its TSC is
 * calibrated, its range initialised and it is dirtying pages at its rate. A source is ready to
 * migrate from here on; no pass has to finish.
 */
export async function waitForGuestStart(
  m: Machine,
  timeoutMs = scaledTimeout("guestStart"),
): Promise<void> {
  await until(`${m.name}: the boot-block guest did not print its start marker`, timeoutMs, () =>
    serialState(m).started ? true : undefined,
  );
}

/** Wait until the guest on `m` has started and finished at least `passes` passes. */
export async function waitForGuestPasses(
  m: Machine,
  passes: number,
  timeoutMs = scaledTimeout("guestStart"),
): Promise<number> {
  return until(
    `${m.name}: the boot-block guest did not print its start marker and ${passes} pass marker(s)`,
    timeoutMs,
    () => {
      const state = serialState(m);
      return state.started && state.passes >= passes ? state.passes : undefined;
    },
  );
}

/** The destination ran the guest after migration: its progress word moved. */
export interface GuestLiveness {
  /** Pages written, first read after the migration and the first read that differed. */
  pagesBefore: number;
  pagesAfter: number;
  /** From the first read to the one that saw the word move. */
  movedAfterMs: number;
  /** Pass counter at the first read, and once the destination was stopped (used by the check). */
  passCounterBefore: number;
  passCounterAtStop: number;
  /** The guest's calibrated TSC frequency and asked rate, as its status block says. */
  tscHz: number;
  askedMiBps: number;
}

export interface RamIntegrity {
  liveness: GuestLiveness;
  check: RamCheckResult;
}

async function progressAfterMigration(destination: Machine): Promise<GuestProgress> {
  try {
    return await readGuestProgress(destination);
  } catch (error) {
    throw new GuestError(`${(error as Error).message} after migration`);
  }
}

/**
 * After a completed migration: prove the guest runs on the destination (its pages-written word
 * moves within `timeoutMs`), stop it, and verify every page of the range. A missing status block
 * or a word that does not move is a failure of its own, reported before any page is looked at.
 */
export async function checkGuestRam(
  destination: Machine,
  guest: PreparedGuest,
  timeoutMs = scaledTimeout("guestLiveness"),
): Promise<RamIntegrity> {
  const params = guest.params;
  if (!params) throw new GuestError("no boot-block guest on this pair: nothing to check");
  const first = await progressAfterMigration(destination);
  const t0 = performance.now();
  const moved = await until(
    `${destination.name}: the boot-block guest's pages-written word (${hex(bootblockArch(guest.arch).statusAddress + BOOTBLOCK_LAYOUT.statusFields.pagesWritten)}) stayed at ${first.pagesWritten} after migration (the guest is not running there)`,
    timeoutMs,
    async () => {
      const now = await progressAfterMigration(destination);
      return now.pagesWritten !== first.pagesWritten ? now : undefined;
    },
    5,
  );
  const movedAfterMs = performance.now() - t0;
  await destination.qmp.execute("stop");
  const status = await progressAfterMigration(destination);
  // Streamed through a small reused buffer: a fresh 1 GiB buffer costs more in page faults
  // than the whole check (measured by scripts/bench.ts).
  const file = await destination.guestMemoryFile(params.rangeEnd);
  let check: RamCheckResult;
  try {
    check = await checkBootblockRamFile(file.path, {
      base: file.base,
      rangeStart: params.rangeStart,
      rangeEnd: params.rangeEnd,
      passCounter: status.passCounter,
    });
  } finally {
    file.release();
  }
  return {
    liveness: {
      pagesBefore: first.pagesWritten,
      pagesAfter: moved.pagesWritten,
      movedAfterMs,
      passCounterBefore: first.passCounter,
      passCounterAtStop: status.passCounter,
      tscHz: status.tscHz,
      askedMiBps: status.askedMiBps,
    },
    check,
  };
}

export interface DirtyRate extends MeasuredDirtyRate {
  pageSpin: number;
  /** The guest's TSC calibration on this binary and accelerator. */
  tscHz: number;
  calibrationSpreadPpm: number;
  calibrationRejected: number;
}

/**
 * The boot-block guest's dirty rate with the given pacing on this host and accelerator, measured
 * on a throwaway machine with a small range: the rate per page does not depend on the range.
 * `dirtyRateMiBps` defaults as for a pair (DEFAULT_DIRTY_RATE_MIBPS; 0 = unpaced), so a pair
 * launched with the same options dirties at what this returns.
 */
export async function measureDirtyRate(options: {
  binary?: string;
  accel?: AccelRequest;
  dirtyRateMiBps?: number;
  pageSpin?: number;
  sampleMs?: number;
  parentDir?: string;
}): Promise<DirtyRate> {
  const dir = mkdtempSync(join(options.parentDir ?? defaultParentDir(), "rate-"));
  try {
    const { arch } = await probeQemuBinary(options.binary ?? "qemu-system-x86_64");
    const guest = await prepareGuest(
      {
        kind: "bootblock",
        rangeEndMiB: 4,
        ...(options.dirtyRateMiBps === undefined ? {} : { dirtyRateMiBps: options.dirtyRateMiBps }),
        pageSpin: options.pageSpin ?? 0,
      },
      16,
      dir,
      arch,
    );
    const m = await Machine.launch({
      name: "dirty-rate",
      memoryMiB: 16,
      guestArgs: guest.args,
      ramBackingFile: true,
      parentDir: dir,
      ...(options.binary ? { binary: options.binary } : {}),
      ...(options.accel ? { accel: options.accel } : {}),
    });
    try {
      await waitForGuestStart(m);
      const rate = await measureGuestDirtyRate(m, options.sampleMs ?? 1000);
      const { tscHz, calibrationSpreadPpm, calibrationRejected } = await readGuestProgress(m);
      return {
        ...rate,
        pageSpin: options.pageSpin ?? 0,
        tscHz,
        calibrationSpreadPpm,
        calibrationRejected,
      };
    } finally {
      await m.shutdown();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
