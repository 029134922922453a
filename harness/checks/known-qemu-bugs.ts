// QEMU bugs the invariants find in released versions that are fixed upstream. Each is matched by
// its exact signature in the reply (never by the rule failing alone), only on versions before the
// fix, and reported as what it is instead of failing every test that happens to trip it. A QEMU
// with the fix that shows the symptom again fails as any other broken rule.

import type { MigrationInfo } from "../qmp/qapi.ts";

/** Where a reply stands on the host's CLOCK_MONOTONIC (QEMU_CLOCK_REALTIME reads it too). */
export interface ReplyClock {
  /** At the reply, ms. */
  replyMs: number;
  /** At the start of the recording (the timeline's t=0), ms. */
  runStartMs: number;
}

export interface QemuVersion {
  major: number;
  minor: number;
}

export interface KnownQemuBug {
  /** The invariant (REPLY_RULES name) whose failure it explains. */
  rule: string;
  /** What QEMU does wrong, and where in its code. */
  title: string;
  /** The first release with the fix, and the fix. */
  fixedIn: QemuVersion & { commit: string };
  /** Whether this reply shows exactly this bug's signature. */
  matches(info: MigrationInfo, clock: ReplyClock): boolean;
}

export const KNOWN_QEMU_BUGS: readonly KnownQemuBug[] = [
  {
    rule: "downtime <= total-time",
    title:
      "postcopy downtime from an unset start: before the fix postcopy_start timed its downtime in a local variable and never set downtime_start, so when a migrate-pause interrupted it before it stored the downtime, migration_calculate_complete reported now - 0, the host's monotonic clock (seen on 7.2: downtime 25600872 ms, total-time 3436 ms, after a pause 7 ms into postcopy)",
    fixedIn: {
      major: 8,
      minor: 2,
      commit: '"migration: Set downtime_start even for postcopy" (Peter Xu, pulled 2023-11-02)',
    },
    // The downtime is a reading of CLOCK_MONOTONIC taken during this recording: hours on any
    // host that has been up a while, within a second of a clock value the harness knows.
    matches: (info, clock) =>
      (info.ram?.["postcopy-bytes"] ?? 0) > 0 &&
      info.downtime !== undefined &&
      info.downtime >= clock.runStartMs - 1000 &&
      info.downtime <= clock.replyMs + 1000,
  },
];

/** The known bug that explains `rule` failing on this reply of this QEMU, if any. */
export function knownQemuBug(
  rule: string,
  info: MigrationInfo,
  version: QemuVersion | undefined,
  clock: ReplyClock | undefined,
): KnownQemuBug | undefined {
  if (!version || !clock) return undefined;
  const before = (v: QemuVersion, fix: QemuVersion) =>
    v.major < fix.major || (v.major === fix.major && v.minor < fix.minor);
  return KNOWN_QEMU_BUGS.find(
    (b) => b.rule === rule && before(version, b.fixedIn) && b.matches(info, clock),
  );
}

/** The host's CLOCK_MONOTONIC now, ms (Node's hrtime is CLOCK_MONOTONIC on Linux). */
export function monotonicNowMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}
