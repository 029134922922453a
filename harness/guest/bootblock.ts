// The default migration guest: a 64 KiB program that dirties one byte of every 4 KiB page of a
// guest-physical range, pass after pass, paced in pages per second on the CPU's own clock:
// images/bootblock.bin for x86_64 (TSC calibrated on the PIT at boot; source images/bootblock/)
// and images/bootblock-aarch64.bin for aarch64 `virt` (generic timer; images/bootblock-aarch64/),
// with one parameter block, status block, page pattern and set of serial markers.
// This module patches its parameter block, says how to boot it and reads its serial markers.
// Its live progress is read by progress.ts; the memory it leaves behind is verified by
// ram-check.ts.

import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { QemuArch } from "../qemu/arch.ts";
import { MACHINE_ARCHES } from "../qemu/machine-arch.ts";
import { hex } from "../util/text.ts";

/**
 * Where things are in the image and in guest-physical memory. Mirrors images/bootblock/bootblock.S
 * and the parameter block both images include (images/bootblock-params.inc).
 */
export const BOOTBLOCK_LAYOUT = {
  /** The image is both a `-bios` ROM (reset vector at its last 16 bytes) and a raw boot disk. */
  imageSize: 0x10000,
  /** Parameter block: image offset; the guest sees it at `paramBlockAddress`. */
  paramBlockOffset: 0x200,
  paramBlockAddress: 0x7e00,
  paramMagic: "MIGTPARM",
  paramVersion: 2,
  /** Offsets inside the parameter block; all values are little-endian. */
  paramFields: {
    magic: 0x00, // 8 bytes
    version: 0x08, // u32
    size: 0x0c, // u32, size of the block in bytes
    rangeStart: 0x10, // u64
    rangeEnd: 0x18, // u64
    pageSpin: 0x20, // u64
    passSpin: 0x28, // u64
    dirtyRatePagesPerSecond: 0x30, // u64, 0: unpaced
    maxLagUs: 0x38, // u64
  },
  paramBlockSize: 0x40,
  /** Status block in guest RAM, written by the guest (u64 fields, little-endian). */
  statusAddress: 0x7000,
  statusMagic: "MIGTSTAT",
  statusVersion: 2,
  /** Offsets inside the status block. */
  statusFields: {
    magic: 0x00, // 8 bytes
    passCounter: 0x08, // incremented once after every pass
    pagesWritten: 0x10, // since the start marker, incremented after every page write
    progressTsc: 0x18, // TSC at the last page write
    tscHz: 0x20, // measured against the PIT before the start marker
    pagesPerSecond: 0x28, // the asked rate, copied from the parameters
    scheduleRestarts: 0x30, // times the guest was too late to catch up and restarted its schedule
    calibrationSpreadPpm: 0x38, // (max - min) / median of the PIT rounds
    version: 0x40, // u32
    calibrationRejected: 0x44, // u32, PIT rounds whose edge the vCPU saw too late to time
  },
  statusSize: 0x48,
  passCounterAddress: 0x7008,
  /**
   * TSC calibration: the median of `rounds` windows of `latch` PIT ticks (20 ms), each accepted
   * only when both its edges are timed within 1/`maxBracket` of it; `attempts` rounds at most.
   */
  calibration: { pitHz: 1_193_182, latch: 23_864, rounds: 3, attempts: 64, maxBracket: 128 },
  /** Lag behind the pacing schedule still made up by writing faster; beyond it, no burst. */
  defaultMaxLagUs: 16_000,
  pageSize: 4096,
  /** Byte 0 of every page is the pass byte; bytes 8..15 hold the page's own address (u64 LE). */
  passByteOffset: 0,
  pageTagOffset: 8,
  /** The range must lie in [minRangeStart, maxRangeEnd) and be page aligned. */
  minRangeStart: 0x100000,
  maxRangeEnd: 0x1_0000_0000,
  defaultRangeStart: 0x100000,
  /** COM1 output. `start` once the range is initialised; `pass` after every pass. */
  markers: {
    start: "MIGT:START\n",
    pass: "B",
    badParams: "MIGT:EPARAM\n",
    diskError: "MIGT:EDISK\n",
    calibrationError: "MIGT:ECALIB\n",
    /** aarch64: an exception; the next line has its syndrome and addresses. */
    fault: "MIGT:EFAULT\n",
  },
} as const;

/** What each error marker means, for messages. */
export const BOOTBLOCK_ERRORS: Record<string, string> = {
  "MIGT:EPARAM":
    "its parameter block is invalid (range unaligned, empty or outside RAM base + 1 MiB..4 GiB)",
  "MIGT:EDISK": "SeaBIOS could not read the rest of the image from the boot disk",
  "MIGT:ECALIB": `it could not calibrate its clock: on x86_64 no 3 of ${BOOTBLOCK_LAYOUT.calibration.attempts} PIT rounds seen promptly (host overloaded, or no PIT channel 2 behind port 0x61); on aarch64 CNTFRQ_EL0 reads 0`,
  "MIGT:EFAULT":
    "it took an exception (aarch64; the serial line after the marker has esr, elr and far)",
};

/** The committed x86_64 image, built by scripts/build-images. */
export const BOOTBLOCK_IMAGE_PATH = fileURLToPath(
  new URL("../../images/bootblock.bin", import.meta.url),
);

export type BootblockBoot = "bios" | "disk";

/**
 * What differs per architecture; everything in BOOTBLOCK_LAYOUT not named here is shared. The
 * x86_64 addresses are BOOTBLOCK_LAYOUT's own. On aarch64 `virt` RAM starts at 1 GiB, so the
 * status block and the range sit at the same offsets from there.
 */
export interface BootblockArch {
  arch: QemuArch;
  image: string;
  /** Guest-physical address of the first byte of RAM (offset 0 of a RAM backing file). */
  ramBase: number;
  statusAddress: number;
  passCounterAddress: number;
  minRangeStart: number;
  defaultRangeStart: number;
  maxRangeEnd: number;
  /** The ways QEMU can load it. */
  boots: readonly BootblockBoot[];
  /** The clock the pacing runs on, for messages. */
  clock: string;
}

const AARCH64_RAM_BASE = MACHINE_ARCHES.aarch64.ramBase;

export const BOOTBLOCK_ARCHES: Record<QemuArch, BootblockArch> = {
  x86_64: {
    arch: "x86_64",
    image: BOOTBLOCK_IMAGE_PATH,
    ramBase: 0,
    statusAddress: BOOTBLOCK_LAYOUT.statusAddress,
    passCounterAddress: BOOTBLOCK_LAYOUT.passCounterAddress,
    minRangeStart: BOOTBLOCK_LAYOUT.minRangeStart,
    defaultRangeStart: BOOTBLOCK_LAYOUT.defaultRangeStart,
    maxRangeEnd: BOOTBLOCK_LAYOUT.maxRangeEnd,
    boots: ["bios", "disk"],
    clock: "TSC calibrated on the PIT",
  },
  aarch64: {
    arch: "aarch64",
    image: fileURLToPath(new URL("../../images/bootblock-aarch64.bin", import.meta.url)),
    ramBase: AARCH64_RAM_BASE,
    statusAddress: AARCH64_RAM_BASE + BOOTBLOCK_LAYOUT.statusAddress,
    passCounterAddress: AARCH64_RAM_BASE + BOOTBLOCK_LAYOUT.passCounterAddress,
    minRangeStart: AARCH64_RAM_BASE + BOOTBLOCK_LAYOUT.minRangeStart,
    defaultRangeStart: AARCH64_RAM_BASE + BOOTBLOCK_LAYOUT.defaultRangeStart,
    maxRangeEnd: AARCH64_RAM_BASE + BOOTBLOCK_LAYOUT.maxRangeEnd,
    boots: ["bios"],
    clock: "generic timer (CNTVCT_EL0 at CNTFRQ_EL0)",
  },
};

export function bootblockArch(arch: QemuArch = "x86_64"): BootblockArch {
  return BOOTBLOCK_ARCHES[arch];
}

export interface BootblockParams {
  /** First byte of the dirtied range, guest-physical; default 1 MiB. Page aligned, >= 1 MiB. */
  rangeStart?: number;
  /** End of the range (exclusive), guest-physical. Page aligned, <= 4 GiB, inside guest RAM. */
  rangeEnd: number;
  /** Pages dirtied per second, paced on the TSC; 0 (default) dirties as fast as the vCPU can. */
  dirtyRatePagesPerSecond?: number;
  /** Lag behind the pacing schedule still made up, in microseconds (default 16 ms). */
  maxLagUs?: number;
  /** Raw knob: busy-loop iterations after every page write, on top of any pacing. */
  pageSpin?: number;
  /** Raw knob: busy-loop iterations after every pass (after its marker). */
  passSpin?: number;
}

export class BootblockImageError extends Error {
  override name = "BootblockImageError";
}

/** Check parameters the way the guest does, so a bad value fails here and not as "MIGT:EPARAM". */
export function validateBootblockParams(
  params: BootblockParams,
  arch: QemuArch = "x86_64",
): Required<BootblockParams> {
  const L = BOOTBLOCK_LAYOUT;
  const A = bootblockArch(arch);
  const p = {
    rangeStart: params.rangeStart ?? A.defaultRangeStart,
    rangeEnd: params.rangeEnd,
    dirtyRatePagesPerSecond: params.dirtyRatePagesPerSecond ?? 0,
    maxLagUs: params.maxLagUs ?? L.defaultMaxLagUs,
    pageSpin: params.pageSpin ?? 0,
    passSpin: params.passSpin ?? 0,
  };
  for (const [name, value] of Object.entries(p)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`bootblock ${name} must be a non-negative integer, got ${value}`);
    }
  }
  if (p.rangeStart % L.pageSize !== 0 || p.rangeEnd % L.pageSize !== 0) {
    throw new RangeError(
      `bootblock range 0x${p.rangeStart.toString(16)}..0x${p.rangeEnd.toString(16)} must be ${L.pageSize}-byte aligned`,
    );
  }
  if (p.rangeStart < A.minRangeStart || p.rangeEnd > A.maxRangeEnd || p.rangeStart >= p.rangeEnd) {
    throw new RangeError(
      `bootblock range ${hex(p.rangeStart)}..${hex(p.rangeEnd)} must be non-empty and inside ${hex(A.minRangeStart)}..${hex(A.maxRangeEnd)}: RAM base + 1 MiB..4 GiB on ${arch}`,
    );
  }
  return p;
}

/** Patch the parameter block of an image held in memory (in place). */
export function patchBootblockImage(
  image: Uint8Array,
  params: BootblockParams,
  arch: QemuArch = "x86_64",
): void {
  const L = BOOTBLOCK_LAYOUT;
  const p = validateBootblockParams(params, arch);
  if (image.length !== L.imageSize) {
    throw new BootblockImageError(
      `bootblock image is ${image.length} bytes, expected ${L.imageSize} (rebuild with scripts/build-images)`,
    );
  }
  const view = new DataView(image.buffer, image.byteOffset + L.paramBlockOffset, L.paramBlockSize);
  const magic = new TextDecoder().decode(
    image.subarray(L.paramBlockOffset, L.paramBlockOffset + 8),
  );
  const version = view.getUint32(L.paramFields.version, true);
  if (magic !== L.paramMagic || version !== L.paramVersion) {
    throw new BootblockImageError(
      `bootblock image has no v${L.paramVersion} parameter block at 0x${L.paramBlockOffset.toString(16)} ` +
        `(found magic ${JSON.stringify(magic)}, version ${version})`,
    );
  }
  view.setBigUint64(L.paramFields.rangeStart, BigInt(p.rangeStart), true);
  view.setBigUint64(L.paramFields.rangeEnd, BigInt(p.rangeEnd), true);
  view.setBigUint64(L.paramFields.pageSpin, BigInt(p.pageSpin), true);
  view.setBigUint64(L.paramFields.passSpin, BigInt(p.passSpin), true);
  view.setBigUint64(L.paramFields.dirtyRatePagesPerSecond, BigInt(p.dirtyRatePagesPerSecond), true);
  view.setBigUint64(L.paramFields.maxLagUs, BigInt(p.maxLagUs), true);
}

/** Copy the bootblock image of `arch` to `destPath` with `params` patched in. */
export async function writeBootblockImage(
  params: BootblockParams,
  destPath: string,
  arch: QemuArch = "x86_64",
  sourcePath: string = bootblockArch(arch).image,
): Promise<void> {
  const image = await readFile(sourcePath);
  patchBootblockImage(image, params, arch);
  await writeFile(destPath, image);
}

/**
 * QEMU arguments that boot the image. "bios" replaces the firmware (first marker within a few
 * hundred ms); "disk" boots it through SeaBIOS from an IDE disk (seconds under software KVM).
 * The guest reads the disk only while booting, so both sides of a migration may share the file.
 */
export function bootblockQemuArgs(
  imagePath: string,
  opts: { boot: BootblockBoot; arch?: QemuArch },
): string[] {
  const arch = opts.arch ?? "x86_64";
  if (!bootblockArch(arch).boots.includes(opts.boot)) {
    throw new BootblockImageError(
      `the ${arch} boot block boots only as ${bootblockArch(arch).boots.join(" or ")}, not "${opts.boot}"`,
    );
  }
  if (opts.boot === "bios") return ["-bios", imagePath];
  // QEMU option values escape a comma by doubling it.
  const file = imagePath.replaceAll(",", ",,");
  return ["-drive", `file=${file},format=raw,if=ide,index=0,media=disk`];
}

export interface BootblockSerialState {
  /** The start marker was seen: the range is initialised and the pass counter is 0. */
  started: boolean;
  /** Pass markers after the last start marker. */
  passes: number;
  /** Start markers beyond the first: the guest was reset and booted again. */
  restarts: number;
  /** A guest-side error message (bad parameters, disk read failure, no PIT to calibrate on). */
  error?: string;
}

/** Read the guest's COM1 output; tolerates firmware text before the start marker. */
export function parseBootblockSerial(text: string): BootblockSerialState {
  const { markers } = BOOTBLOCK_LAYOUT;
  const starts = text.split(markers.start).length - 1;
  const last = text.lastIndexOf(markers.start);
  const after = last < 0 ? "" : text.slice(last + markers.start.length);
  const state: BootblockSerialState = {
    started: starts > 0,
    passes: after.split(markers.pass).length - 1,
    restarts: Math.max(0, starts - 1),
  };
  for (const message of [
    markers.badParams,
    markers.diskError,
    markers.calibrationError,
    markers.fault,
  ]) {
    if (text.includes(message)) state.error = message.trim();
  }
  return state;
}
