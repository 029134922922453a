// Consistency of everything a pair recorded, whatever the test did with it: on each side every
// info migrate agrees with the query-migrate replies read around it, and on the source no work
// counter goes down within a migration attempt. The suites' fixture runs these on every pair.

import { compareWithQmp } from "../hmp/compare-qmp.ts";
import { parseInfoMigrate } from "../hmp/info-migrate.ts";
import type { Side, Timeline } from "../migration/timeline.ts";
import type { MigrationStats } from "../qmp/qapi.ts";

const FINAL = ["completed", "failed", "cancelled"];

/** MigrationStats members that count work done: on the source they never go down. */
const SOURCE_COUNTERS = [
  "transferred",
  "duplicate",
  "normal",
  "normal-bytes",
  "dirty-sync-count",
  "precopy-bytes",
  "downtime-bytes",
  "postcopy-bytes",
  "multifd-bytes",
] as const satisfies readonly (keyof MigrationStats)[];

/**
 * Each HMP snapshot of `side` against QMP. Where the status did not move while HMP printed, the
 * text must match the QMP state (values may still move while live, presence may not); where it
 * moved, HMP must show one of the two states it was printed between. No line may be unknown.
 */
export function hmpAgainstQmpProblems(timeline: Timeline, side: Side): string[] {
  const problems: string[] = [];
  for (const b of timeline.hmpBrackets(side)) {
    const parsed = parseInfoMigrate(b.text);
    const at = `${side} info migrate at t=${b.t} ms`;
    if (parsed.unknownLines.length > 0) {
      problems.push(
        `${at} has lines the parser does not know: ${JSON.stringify(parsed.unknownLines)}`,
      );
    }
    if (!b.stable) {
      if (parsed.status !== b.before.status && parsed.status !== b.after.status) {
        problems.push(
          `${at}: HMP status ${JSON.stringify(parsed.status)} is neither of the QMP statuses read around it (${b.before.status}, ${b.after.status})`,
        );
      }
      continue;
    }
    const live = !FINAL.includes(b.after.status ?? "");
    // HMP printed some instant between the two reads: a member that moved meanwhile may match
    // either read. That holds in final states too: 7.2 flips the status to completed before it
    // fills total-time, downtime and mbps, so HMP can print "completed" with a total time of 0.
    const againstBefore = compareWithQmp(parsed, b.before, { live }).map(memberOf);
    const differences = compareWithQmp(parsed, b.after, { live }).filter((d) =>
      againstBefore.includes(memberOf(d)),
    );
    for (const d of differences) {
      problems.push(
        `${at}: ${d}\n  HMP: ${JSON.stringify(b.text)}\n  QMP: ${JSON.stringify(b.after)}`,
      );
    }
  }
  return problems;
}

/** Source counters that went down within one migration attempt (a new `setup` starts another). */
export function counterProblems(timeline: Timeline): string[] {
  const problems: string[] = [];
  let previous: { t: number; ram: MigrationStats } | undefined;
  for (const { t, data } of timeline.of("source", "query-migrate")) {
    if (data.status === "setup" || !data.ram) {
      // A failed or cancelled attempt reports no ram: the next one starts from zero.
      if (["setup", "failed", "cancelled"].includes(data.status ?? "")) previous = undefined;
      continue;
    }
    if (previous) {
      for (const c of SOURCE_COUNTERS) {
        const a = previous.ram[c];
        const b = data.ram[c];
        if (a !== undefined && b !== undefined && b < a) {
          problems.push(
            `source ram.${c} went down from ${a} (t=${previous.t} ms) to ${b} (t=${t} ms)`,
          );
        }
      }
    }
    // A completed attempt is over: a migration after it (back from its destination) starts anew.
    previous = data.status === "completed" ? undefined : { t, ram: data.ram };
  }
  return problems;
}

/** Everything above, both sides. */
export function timelineProblems(timeline: Timeline): string[] {
  return [
    ...hmpAgainstQmpProblems(timeline, "source"),
    ...hmpAgainstQmpProblems(timeline, "destination"),
    ...counterProblems(timeline),
  ];
}

/** "setup-time: HMP 0 but QMP 7" -> "setup-time". */
function memberOf(difference: string): string {
  return difference.split(":")[0] ?? difference;
}
