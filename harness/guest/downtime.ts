// Guest-visible downtime: the longest stretch the guest could not run across the switchover,
// seen from the guest's own progress word. Both sides' RAM is on a shared file, so the status
// block is read in place, about every millisecond, from the source until its guest stops
// writing and from the destination until its guest writes again. The destination's copy of the
// block changes during precopy too (the page is re-sent every pass), so its guest counts as
// running only once its pages-written word passes the highest value the source ever reached.

import { closeSync, openSync, readSync } from "node:fs";
import type { Machine } from "../qemu/machine.ts";
import { BOOTBLOCK_LAYOUT, bootblockArch } from "./bootblock.ts";

export interface GuestDowntime {
  /** Host ms from the read that saw the source's last page write to the first read that saw the destination's first. */
  stretchMs: number;
  /** The longest gap between two reads at either edge: the stretch is exact to within this. */
  resolutionMs: number;
  /** How far the guest's own TSC advanced across the stretch, in ms of its calibrated clock. */
  guestClockMs: number;
  /** Pages written when the source stopped, and at the destination's first read past it. */
  sourcePages: number;
  destinationPages: number;
  reads: number;
}

interface Read {
  at: number;
  pages: number;
  tsc: bigint;
  tscHz: number;
}

const F = BOOTBLOCK_LAYOUT.statusFields;

function reader(m: Machine): { read: () => Read | undefined; close: () => void } {
  if (!m.ramFile) {
    throw new Error(
      `${m.name}: guest-visible downtime reads the guest's RAM in place; launch it with ramBackingFile`,
    );
  }
  const fd = openSync(m.ramFile, "r");
  const offset = bootblockArch(m.arch).statusAddress - m.ramBase;
  const buf = Buffer.alloc(BOOTBLOCK_LAYOUT.statusSize);
  const magic = Buffer.from(BOOTBLOCK_LAYOUT.statusMagic);
  return {
    read: () => {
      const at = performance.now();
      if (readSync(fd, buf, 0, buf.length, offset) < buf.length) return;
      if (!buf.subarray(0, magic.length).equals(magic)) return undefined;
      return {
        at,
        pages: Number(buf.readBigUInt64LE(F.pagesWritten)),
        tsc: buf.readBigUInt64LE(F.progressTsc),
        tscHz: Number(buf.readBigUInt64LE(F.tscHz)),
      };
    },
    close: () => closeSync(fd),
  };
}

/**
 * Sample both sides from now until the guest has written on the destination (or `stop()` is
 * called, or `timeoutMs` passes). Resolves with the stretch, or undefined when no switchover
 * was seen.
 */
export function sampleSwitchover(
  source: Machine,
  destination: Machine,
  timeoutMs: number,
): { result: Promise<GuestDowntime | undefined>; stop: () => void } {
  let stopped = false;
  const result = (async () => {
    const src = reader(source);
    const dst = reader(destination);
    try {
      const deadline = performance.now() + timeoutMs;
      let reads = 0;
      let max: Read | undefined;
      let beforeMax: number | undefined;
      let prevSrcAt: number | undefined;
      let prevDstAt: number | undefined;
      for (;;) {
        if (stopped || performance.now() > deadline) return undefined;
        const s = src.read();
        const d = dst.read();
        reads++;
        if (s && (!max || s.pages > max.pages)) {
          beforeMax = prevSrcAt ?? s.at;
          max = s;
        }
        prevSrcAt = s?.at ?? prevSrcAt;
        if (max && d && d.pages > max.pages) {
          const resolutionMs = Math.max(max.at - (beforeMax ?? max.at), d.at - (prevDstAt ?? d.at));
          return {
            stretchMs: d.at - max.at,
            resolutionMs,
            guestClockMs: (Number(d.tsc - max.tsc) / (d.tscHz || max.tscHz || 1)) * 1000,
            sourcePages: max.pages,
            destinationPages: d.pages,
            reads,
          };
        }
        prevDstAt = d?.at;
        // About a read a millisecond; the event loop still runs the pair's waits meanwhile.
        await new Promise((r) => setTimeout(r, 1));
      }
    } finally {
      src.close();
      dst.close();
    }
  })();
  return {
    result,
    stop: () => {
      stopped = true;
    },
  };
}
