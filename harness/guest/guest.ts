// The guest a migration pair runs, and the proof that nothing was lost: the boot-block guest
// (images/bootblock.bin) dirties one byte per page of a range pass after pass; after the
// migration the destination must still be running it (pass markers keep coming, the pass counter
// moves), and once stopped its RAM must hold the pattern exactly (ram-check.ts).

import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { AccelRequest } from "../qemu/accel.ts";
import { defaultParentDir, Machine } from "../qemu/machine.ts";
import {
  BOOTBLOCK_LAYOUT,
  type BootblockBoot,
  type BootblockParams,
  bootblockQemuArgs,
  parseBootblockSerial,
  validateBootblockParams,
  writeBootblockImage,
} from "./bootblock.ts";
import { checkBootblockRamFile, type RamCheckResult, readBootblockStatus } from "./ram-check.ts";

export type GuestOptions =
  | {
      kind: "bootblock";
      /** End of the dirtied range in MiB (default: guest RAM minus 16 MiB). */
      rangeEndMiB?: number;
      /** Busy-loop iterations after each page write: 0 dirties as fast as the vCPU can. */
      pageSpin?: number;
      passSpin?: number;
      boot?: BootblockBoot;
    }
  /** No guest code: firmware only (SeaBIOS finds nothing to boot). Nothing to check. */
  | { kind: "none" };

export interface PreparedGuest {
  options: GuestOptions;
  /** QEMU arguments that load it; the same on both sides. */
  args: string[];
  params?: Required<BootblockParams>;
}

export class GuestError extends Error {
  override name = "GuestError";
}

/** Write the guest's image (if any) into `dir` and say how to boot it. */
export async function prepareGuest(
  options: GuestOptions,
  memoryMiB: number,
  dir: string,
): Promise<PreparedGuest> {
  if (options.kind === "none") return { options, args: [] };
  const rangeEndMiB = options.rangeEndMiB ?? Math.max(2, memoryMiB - 16);
  if (rangeEndMiB > memoryMiB) {
    throw new GuestError(
      `boot-block range end ${rangeEndMiB} MiB is beyond the guest's ${memoryMiB} MiB of RAM; lower rangeEndMiB or raise memoryMiB`,
    );
  }
  const params = validateBootblockParams({
    rangeEnd: rangeEndMiB * 1024 * 1024,
    pageSpin: options.pageSpin ?? 0,
    passSpin: options.passSpin ?? 0,
  });
  const image = join(dir, "bootblock.bin");
  await writeBootblockImage(params, image);
  return { options, args: bootblockQemuArgs(image, { boot: options.boot ?? "bios" }), params };
}

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | undefined | Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new GuestError(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Wait until the guest on `m` has started and finished at least `passes` passes. */
export async function waitForGuestPasses(
  m: Machine,
  passes: number,
  timeoutMs = 20_000,
): Promise<number> {
  return until(
    `${m.name}: the boot-block guest did not print its start marker and ${passes} pass marker(s)`,
    timeoutMs,
    () => {
      const state = parseBootblockSerial(m.serialText());
      if (state.error) {
        throw new GuestError(`${m.name}: the boot-block guest reported ${state.error}`);
      }
      return state.started && state.passes >= passes ? state.passes : undefined;
    },
  );
}

/** Pass markers a destination printed since it took over (it never saw the start marker). */
function passMarkersSince(text: string): number {
  return text.split(BOOTBLOCK_LAYOUT.markers.pass).length - 1;
}

export interface RamIntegrity {
  /** The guest kept running on the destination: markers and pass counter after migration. */
  liveness: { passMarkers: number; counterBefore: number; counterAfter: number };
  check: RamCheckResult;
}

/**
 * After a completed migration: prove the guest runs on the destination, stop it, and verify
 * every page of the range. A missing status block or a counter that does not move is a failure
 * of its own, reported before any page is looked at.
 */
export async function checkGuestRam(
  destination: Machine,
  guest: PreparedGuest,
  timeoutMs = 10_000,
): Promise<RamIntegrity> {
  const params = guest.params;
  if (!params) throw new GuestError("no boot-block guest on this pair: nothing to check");
  const { passCounterAddress } = BOOTBLOCK_LAYOUT;
  const readCounter = async () =>
    readBootblockStatus(await destination.readGuestMemory(0, passCounterAddress + 8), 0);
  const first = await readCounter();
  if (!first) {
    throw new GuestError(
      `${destination.name}: no boot-block status block at 0x${BOOTBLOCK_LAYOUT.statusAddress.toString(16)} in guest RAM after migration`,
    );
  }
  const passMarkers = await until(
    `${destination.name}: no pass marker on the destination's serial console after migration (the guest is not running there)`,
    timeoutMs,
    () => {
      const n = passMarkersSince(destination.serialText());
      return n > 0 ? n : undefined;
    },
  );
  const moved = await until(
    `${destination.name}: the pass counter stayed at ${first.passCounter} after migration`,
    timeoutMs,
    async () => {
      const now = await readCounter();
      return now && now.passCounter !== first.passCounter ? now.passCounter : undefined;
    },
  );
  await destination.qmp.execute("stop");
  const status = await readCounter();
  // Streamed through a small reused buffer: a fresh 1 GiB buffer costs more in page faults
  // than the whole check (measured by scripts/bench.ts).
  const file = await destination.guestMemoryFile(params.rangeEnd);
  let check: RamCheckResult;
  try {
    check = await checkBootblockRamFile(file.path, {
      base: 0,
      rangeStart: params.rangeStart,
      rangeEnd: params.rangeEnd,
      ...(status ? { passCounter: status.passCounter } : {}),
    });
  } finally {
    file.release();
  }
  return {
    liveness: { passMarkers, counterBefore: first.passCounter, counterAfter: moved },
    check,
  };
}

export interface DirtyRate {
  pageSpin: number;
  pagesPerSecond: number;
  bytesPerSecond: number;
}

/**
 * The boot-block guest's dirty rate with a given pageSpin on this host and accelerator, measured
 * on a throwaway machine with a tiny range (many passes per second): the rate per page does not
 * depend on the range. A test that needs a migration converging over several passes sets the
 * bandwidth relative to this, so it holds on TCG and on hardware KVM alike.
 */
export async function measureDirtyRate(options: {
  binary?: string;
  accel?: AccelRequest;
  pageSpin: number;
  sampleMs?: number;
  parentDir?: string;
}): Promise<DirtyRate> {
  const rangePages = 512;
  const dir = mkdtempSync(join(options.parentDir ?? defaultParentDir(), "rate-"));
  try {
    const guest = await prepareGuest(
      { kind: "bootblock", rangeEndMiB: 1 + (rangePages * 4) / 1024, pageSpin: options.pageSpin },
      16,
      dir,
    );
    const m = await Machine.launch({
      name: "calibrate",
      memoryMiB: 16,
      guestArgs: guest.args,
      parentDir: dir,
      ...(options.binary ? { binary: options.binary } : {}),
      ...(options.accel ? { accel: options.accel } : {}),
    });
    try {
      const first = await waitForGuestPasses(m, 1);
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, options.sampleMs ?? 1000));
      const passes = parseBootblockSerial(m.serialText()).passes - first;
      const pagesPerSecond = (passes * rangePages * 1000) / (Date.now() - t0);
      return { pageSpin: options.pageSpin, pagesPerSecond, bytesPerSecond: pagesPerSecond * 4096 };
    } finally {
      await m.shutdown();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
