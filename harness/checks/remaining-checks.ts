// Checks of the system-wide `remaining` (system-wide-remaining patch: a top-level `remaining` in
// query-migrate and a `Remaining:` line in HMP info migrate) as pure functions over recorded
// snapshots: the remaining suite and the A/B run apply the same ones.
//  - absent:  the schema lacks MigrationInfo.remaining, and neither QMP nor HMP shows it;
//  - present: the source reports `remaining` in every snapshot taken while active;
//  - agree:   HMP `Remaining:` stands for the QMP value, within size_to_str() rounding, and is
//             printed exactly when query-migrate has the member.

import { parseInfoMigrate } from "../hmp/info-migrate.ts";
import { formatSizeToStr } from "../hmp/size.ts";
import type { Side, Timeline } from "../migration/timeline.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";

/** An info migrate with the query-migrate replies read just before and after it. */
export interface RemainingSnapshot {
  side: Side;
  /** A name for where the run was (A/B phases); the status is shown when absent. */
  phase?: string;
  /** ms since the pair started. */
  t: number;
  before: MigrationInfo;
  infoMigrate: string;
  after: MigrationInfo;
}

/** Every bracketed info migrate of both sides of a pair's timeline. */
export function snapshotsFromTimeline(timeline: Timeline): RemainingSnapshot[] {
  return (["source", "destination"] as const).flatMap((side) =>
    timeline.hmpBrackets(side).map((b) => ({
      side,
      t: b.t,
      before: b.before,
      infoMigrate: b.text,
      after: b.after,
    })),
  );
}

export type RemainingStatus = "pass" | "fail" | "absent";

export interface RemainingVerdict {
  status: RemainingStatus;
  /** Each disagreement, saying side, phase, snapshot and both values. */
  failures: string[];
  /** One line: what was checked or why it is absent. */
  summary: string;
}

export interface RemainingInput {
  /** migrationFeatures(schema).topLevelRemaining of the build. */
  schemaDeclares: boolean;
  snapshots: readonly RemainingSnapshot[];
}

function where(s: RemainingSnapshot, index: number): string {
  const phase = s.phase ?? `status ${s.after.status ?? "none"}`;
  return `${s.side}, ${s.phase ? "phase " : ""}${phase}, snapshot ${index + 1} (t=${s.t} ms)`;
}

function hasRemaining(info: MigrationInfo): boolean {
  return typeof info.remaining === "number";
}

/** HMP's Remaining: line (parsed), or undefined when the text has none. */
function hmpRemaining(text: string) {
  return parseInfoMigrate(text).remaining;
}

/** Present on the source while active: both reads around every active snapshot have it. */
export function checkPresentWhileActive(snapshots: readonly RemainingSnapshot[]): string[] {
  const failures: string[] = [];
  const active = snapshots.filter(
    (s) => s.side === "source" && s.before.status === "active" && s.after.status === "active",
  );
  if (active.length === 0) {
    return [
      "source: no snapshot was taken while the migration was active, so `remaining` could not be checked there (lower max-bandwidth)",
    ];
  }
  snapshots.forEach((s, i) => {
    if (!active.includes(s)) return;
    for (const [read, info] of [
      ["before", s.before],
      ["after", s.after],
    ] as const) {
      if (!hasRemaining(info)) {
        failures.push(
          `${where(s, i)}: query-migrate (read ${read} info migrate) has no top-level "remaining" although query-qmp-schema declares MigrationInfo.remaining; members were: ${Object.keys(info).join(", ")}`,
        );
      }
    }
  });
  return failures;
}

/**
 * HMP `Remaining:` against QMP `remaining`, per snapshot of either side. The value moves while
 * HMP prints it, so the HMP interval must overlap [min, max] of the two bracketing QMP reads;
 * where only one of them has the member (a state change in between), presence is all that holds.
 */
export function checkHmpAgreesWithQmp(snapshots: readonly RemainingSnapshot[]): string[] {
  const failures: string[] = [];
  snapshots.forEach((s, i) => {
    const hmp = hmpRemaining(s.infoMigrate);
    const a = s.before.remaining;
    const b = s.after.remaining;
    const qmpHas = typeof a === "number" || typeof b === "number";
    if (!hmp && !qmpHas) return;
    if (hmp && !qmpHas) {
      failures.push(
        `${where(s, i)}: HMP info migrate prints "Remaining: ${hmp.text}" but query-migrate has no "remaining" before or after it`,
      );
      return;
    }
    if (!hmp) {
      // Only a disagreement when both reads have it: a state change in between may add it.
      if (typeof a === "number" && typeof b === "number") {
        failures.push(
          `${where(s, i)}: query-migrate has "remaining" (${a} bytes before, ${b} after) but HMP info migrate prints no "Remaining:" line`,
        );
      }
      return;
    }
    const values = [a, b].filter((v): v is number => typeof v === "number");
    // Only one read around the text has the member: the state changed while HMP printed, and a
    // moving value has no bracket to be held to. The line's presence fits one of the two states.
    if (values.length < 2) return;
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    if (hmp.max < lo || hmp.min > hi) {
      const qmpText =
        values.length === 2 && a !== b
          ? `${a} bytes (${formatSizeToStr(a as number)}) before and ${b} bytes (${formatSizeToStr(b as number)}) after it`
          : `${values[0]} bytes (${formatSizeToStr(values[0] as number)})`;
      const ratio =
        hi > 0 && hmp.bytes > 0
          ? `; HMP is ${(hmp.bytes / hi).toPrecision(3)} times the QMP value`
          : "";
      failures.push(
        `${where(s, i)}: HMP "Remaining: ${hmp.text}" stands for ${hmp.min}..${hmp.max} bytes, but query-migrate "remaining" was ${qmpText}: they disagree${ratio}`,
      );
    }
  });
  return failures;
}

/** Neither query-migrate nor info migrate may show what the schema does not declare. */
export function checkAbsent(snapshots: readonly RemainingSnapshot[]): string[] {
  const failures: string[] = [];
  snapshots.forEach((s, i) => {
    if (hasRemaining(s.before) || hasRemaining(s.after)) {
      failures.push(
        `${where(s, i)}: query-migrate returns "remaining" but query-qmp-schema does not declare MigrationInfo.remaining`,
      );
    }
    const hmp = hmpRemaining(s.infoMigrate);
    if (hmp) {
      failures.push(
        `${where(s, i)}: HMP prints "Remaining: ${hmp.text}" but query-qmp-schema does not declare MigrationInfo.remaining`,
      );
    }
  });
  return failures;
}

/** The whole `remaining` verdict of one build's recorded scenario. */
export function checkRemaining(input: RemainingInput): RemainingVerdict {
  if (!input.schemaDeclares) {
    const failures = checkAbsent(input.snapshots);
    return failures.length === 0
      ? {
          status: "absent",
          failures,
          summary:
            "absent: query-qmp-schema has no MigrationInfo.remaining, and neither QMP nor HMP shows it",
        }
      : {
          status: "fail",
          failures,
          summary: `${failures.length} disagreement(s): remaining shown without being declared`,
        };
  }
  const failures = [
    ...checkPresentWhileActive(input.snapshots),
    ...checkHmpAgreesWithQmp(input.snapshots),
  ];
  const active = input.snapshots.filter(
    (s) => s.side === "source" && s.after.status === "active",
  ).length;
  return failures.length === 0
    ? {
        status: "pass",
        failures,
        summary: `pass: present on the source in all ${active} active snapshot(s); HMP "Remaining:" agrees with QMP in all ${input.snapshots.length} snapshot(s)`,
      }
    : {
        status: "fail",
        failures,
        summary: `fail: ${failures.length} disagreement(s); first: ${failures[0]}`,
      };
}
