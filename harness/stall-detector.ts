// Stall detection on the system-wide `remaining` (the use the system-wide-remaining patch
// names): sample it at each MIGRATION_PASS and call the migration "not converging" when it has
// not decreased over N passes. Samples of 0 while RAM is still dirty are the cached value's
// blind spot (it empties before the dirty-bitmap sync refills it) and are not counted as progress.

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
 * Not converging: over the last `passes` usable samples, `remaining` never went below the value
 * it had `passes` samples earlier (by more than `minDecrease` bytes).
 */
export function detectStall(
  all: readonly PassSample[],
  options: { passes: number; minDecrease?: number },
): StallVerdict {
  const { passes } = options;
  const minDecrease = options.minDecrease ?? 0;
  const samples = all.filter((s) => !(s.remaining === 0 && (s.ramRemaining ?? 0) > 0));
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
  if (first && best >= first.remaining - minDecrease) {
    return {
      stalled: true,
      samples,
      reason: `not converging: remaining was ${first.remaining} bytes at pass ${first.pass} and never dropped below ${best} bytes over the next ${passes} passes`,
    };
  }
  return {
    stalled: false,
    samples,
    reason: `converging: remaining fell from ${first?.remaining} to ${best} bytes within ${passes} passes`,
  };
}
