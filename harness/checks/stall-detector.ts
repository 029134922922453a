// Stall detection on the system-wide `remaining` (the use the system-wide-remaining patch
// names): sample it at each MIGRATION_PASS and call the migration "not converging" when it has
// not decreased over N passes. Samples of 0 while RAM still has much dirty are the cached value's
// blind spot (it empties before the dirty-bitmap sync refills it) and are not counted as progress.

import type { Timeline } from "../migration/timeline.ts";
import { MiB } from "../util/units.ts";

export interface PassSample {
  /** MIGRATION_PASS `pass` (the dirty-sync count). */
  pass: number;
  /** Top-level `remaining` read right after that event. */
  remaining: number;
  /** `ram.remaining` of the same reply, to recognise the stale zero. */
  ramRemaining?: number;
}

export interface StallVerdict {
  stalled: boolean;
  /** Passes considered (after dropping stale zeros). */
  samples: PassSample[];
  reason: string;
}

/**
 * Not converging: over the last `passes` usable samples, `remaining` never fell below
 * (1 - minDecreaseRatio) of the value it had `passes` samples earlier. The ratio absorbs the
 * cached value's lag (about one rate-limit window of transfer), which is noise, not progress.
 */
export function detectStall(
  all: readonly PassSample[],
  options: { passes: number; minDecreaseRatio?: number; staleZeroBytes?: number },
): StallVerdict {
  const { passes } = options;
  const ratio = options.minDecreaseRatio ?? 0.25;
  // A 0 while RAM still has more than this dirty is the blind spot; a few pages left is real.
  const stale = options.staleZeroBytes ?? MiB;
  const samples = all.filter((s) => !(s.remaining === 0 && (s.ramRemaining ?? 0) > stale));
  if (samples.length <= passes) {
    return {
      stalled: false,
      samples,
      reason: `only ${samples.length} usable pass sample(s); ${passes + 1} are needed to judge`,
    };
  }
  const window = samples.slice(-(passes + 1));
  const [first] = window;
  const best = Math.min(...window.slice(1).map((s) => s.remaining));
  if (first && best >= first.remaining * (1 - ratio)) {
    return {
      stalled: true,
      samples,
      reason: `not converging: remaining was ${first.remaining} bytes at pass ${first.pass} and its lowest over the next ${passes} passes was ${best} bytes (less than ${Math.round(ratio * 100)}% lower)`,
    };
  }
  return {
    stalled: false,
    samples,
    reason: `converging: remaining fell from ${first?.remaining} to ${best} bytes within ${passes} passes`,
  };
}

/**
 * One sample per MIGRATION_PASS of the source: the first query-migrate the pair recorded after
 * the event (the pair snapshots as soon as an event wakes it). Passes with no `remaining` in
 * that reply (a QEMU without the member, or status no longer active) are left out.
 */
export function passSamples(timeline: Timeline): PassSample[] {
  const out: PassSample[] = [];
  const entries = timeline.entries.filter((e) => e.side === "source");
  entries.forEach((e, i) => {
    if (e.kind !== "event" || e.data.event !== "MIGRATION_PASS") return;
    const reply = entries.slice(i + 1).find((x) => x.kind === "query-migrate");
    if (reply?.kind !== "query-migrate" || reply.data.remaining === undefined) return;
    out.push({
      pass: Number(e.data.data?.pass),
      remaining: reply.data.remaining,
      ...(reply.data.ram ? { ramRemaining: reply.data.ram.remaining } : {}),
    });
  });
  return out;
}
