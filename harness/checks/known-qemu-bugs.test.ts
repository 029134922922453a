import { describe, expect, test } from "vitest";
import { Timeline } from "../migration/timeline.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";
import { invariantFindings, invariantProblems } from "./invariants.ts";
import { KNOWN_QEMU_BUGS, knownQemuBug, monotonicNowMs } from "./known-qemu-bugs.ts";

// The source's last reply of "postcopy paused with migrate-pause recovers" [7.2, aarch64, tcg]
// in a CI run: the pause came 7 ms into postcopy; the host had been up 25600.9 s.
const REPLY_72: MigrationInfo = {
  status: "completed",
  "setup-time": 2,
  downtime: 25600872,
  "total-time": 3436,
  ram: {
    total: 268574720,
    "postcopy-requests": 37,
    "dirty-sync-count": 2,
    "multifd-bytes": 0,
    "pages-per-second": 8180,
    "downtime-bytes": 0,
    "page-size": 4096,
    remaining: 0,
    "postcopy-bytes": 116762911,
    mbps: 264.24421898660455,
    transferred: 120118178,
    "dirty-sync-missed-zero-copy": 0,
    "precopy-bytes": 3355267,
    duplicate: 37146,
    "dirty-pages-rate": 0,
    normal: 29187,
    "normal-bytes": 119549952,
  },
};
const RULE = "downtime <= total-time";
// The monotonic clock as it stood in that run, 3.5 s of recording.
const CLOCK = { runStartMs: 25600872 - 3300, replyMs: 25600872 + 12 };
const V72 = { major: 7, minor: 2 };

describe("known QEMU bugs", () => {
  test("each names the rule it explains, its fix and the first release with it", () => {
    for (const b of KNOWN_QEMU_BUGS) {
      expect(b.rule).toMatch(/\S/);
      expect(b.fixedIn.commit).toMatch(/^".+"/);
      expect(b.fixedIn.major).toBeGreaterThan(0);
    }
  });

  test("7.2's postcopy downtime read from an unset start is recognised by its signature", () => {
    expect(knownQemuBug(RULE, REPLY_72, V72, CLOCK)?.fixedIn).toMatchObject({ major: 8, minor: 2 });
  });

  test("not on a QEMU with the fix, not for another figure, not without postcopy", () => {
    expect(knownQemuBug(RULE, REPLY_72, { major: 8, minor: 2 }, CLOCK)).toBeUndefined();
    expect(knownQemuBug(RULE, REPLY_72, { major: 11, minor: 1 }, CLOCK)).toBeUndefined();
    // A downtime that is wrong but not the host's clock: a bug of its own, still failed.
    expect(knownQemuBug(RULE, { ...REPLY_72, downtime: 5000 }, V72, CLOCK)).toBeUndefined();
    const precopy = structuredClone(REPLY_72);
    if (precopy.ram) precopy.ram["postcopy-bytes"] = 0;
    expect(knownQemuBug(RULE, precopy, V72, CLOCK)).toBeUndefined();
    expect(knownQemuBug("remaining <= total", REPLY_72, V72, CLOCK)).toBeUndefined();
    expect(knownQemuBug(RULE, REPLY_72, V72, undefined)).toBeUndefined();
  });

  test("over a timeline: reported as the known bug on 7.2, a problem on 11.1", () => {
    const timeline = new Timeline();
    const reply = { ...REPLY_72, downtime: monotonicNowMs() };
    timeline.record("source", "query-migrate", reply);
    const context = (major: number, minor: number) => ({
      versions: { source: { major, minor } },
      monotonicAt: (t: number) => monotonicNowMs() - (Date.now() - (timeline.startedAt + t)),
    });
    const on72 = invariantFindings(timeline, context(7, 2)).filter((f) => f.text.includes(RULE));
    expect(on72).toHaveLength(1);
    expect(on72[0]?.knownBug?.rule).toBe(RULE);
    expect(invariantProblems(timeline, context(7, 2)).filter((p) => p.includes(RULE))).toEqual([]);
    expect(
      invariantProblems(timeline, context(11, 1)).filter((p) => p.includes(RULE)),
    ).toHaveLength(1);
  });
});
