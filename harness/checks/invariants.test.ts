import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { Timeline } from "../migration/timeline.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";
import { loadInfoMigrateFixtures } from "./info-migrate-fixture.ts";
import { invariantProblems, REPLY_RULES, replyProblems, seriesProblems } from "./invariants.ts";

// Every real reply captured from 7.2, 10.0 and 11.1 (plain and per feature family) keeps every rule.
const FIXTURE_DIR = fileURLToPath(new URL("../fixtures/info-migrate/", import.meta.url));
const FAMILY_DIR = `${FIXTURE_DIR}families/`;
const fixtures = [
  ...loadInfoMigrateFixtures(FIXTURE_DIR),
  ...(existsSync(FAMILY_DIR)
    ? loadInfoMigrateFixtures(FAMILY_DIR).map((f) => ({ ...f, file: `families/${f.file}` }))
    : []),
];

/** A completed source reply as 11.1.3 gave it (harness/fixtures/info-migrate), to break. */
function completed(): MigrationInfo {
  const f = fixtures.find((x) => x.file === "11.1.3-source-completed.json");
  if (!f) throw new Error("fixture 11.1.3-source-completed.json missing");
  return structuredClone(f.qmp);
}

function withRam(patch: Record<string, number>): MigrationInfo {
  const info = completed();
  Object.assign(info.ram ?? {}, patch);
  return info;
}

/** One reply per rule, each breaking exactly that rule. */
const BROKEN: Record<string, () => MigrationInfo> = {
  "normal-bytes = normal x page-size": () => {
    const i = completed();
    if (i.ram) i.ram["normal-bytes"] += 4096;
    return i;
  },
  "page-size is a power of two": () => {
    const i = completed();
    if (i.ram) {
      i.ram["page-size"] = 4000;
      i.ram["normal-bytes"] = i.ram.normal * 4000;
    }
    return i;
  },
  "remaining <= total": () => {
    const i = completed();
    i.status = "active";
    if (i.ram) i.ram.remaining = i.ram.total + 4096;
    return i;
  },
  "transferred >= precopy + downtime + postcopy bytes": () => {
    const i = completed();
    if (i.ram) i.ram["downtime-bytes"] = i.ram.transferred;
    return i;
  },
  "dirty-sync-count >= 1 once active": () => {
    const i = completed();
    i.status = "active";
    if (i.ram) i.ram["dirty-sync-count"] = 0;
    return i;
  },
  "setup-time <= total-time": () => {
    const i = completed();
    return { ...i, "setup-time": (i["total-time"] ?? 0) + 1000, downtime: 1 };
  },
  "downtime <= total-time": () => {
    const i = completed();
    return { ...i, downtime: (i["total-time"] ?? 0) + 1000 };
  },
  "remaining = 0 once completed": () => withRam({ remaining: 4096 }),
  "every page sent at least once by completion": () =>
    withRam({ duplicate: 0, normal: 10, "normal-bytes": 40_960 }),
  "mbps at completion from transferred and the transfer time": () => {
    const i = completed();
    if (i.ram) i.ram.mbps /= 8; // a bytes-vs-bits slip
    return i;
  },
  "xbzrle cache-miss-rate is a fraction": () => ({
    ...completed(),
    "xbzrle-cache": {
      "cache-size": 1 << 20,
      bytes: 100,
      pages: 10,
      "cache-miss": 5,
      "cache-miss-rate": 1.5,
      "encoding-rate": 400,
      overflow: 0,
    },
  }),
  "xbzrle bytes <= pages x (page-size + header)": () => ({
    ...completed(),
    "xbzrle-cache": {
      "cache-size": 1 << 20,
      bytes: 10 * 4096 * 2,
      pages: 10,
      "cache-miss": 5,
      "cache-miss-rate": 0.5,
      "encoding-rate": 0.5,
      overflow: 0,
    },
  }),
  "cpu-throttle-percentage in 1..99": () => ({ ...completed(), "cpu-throttle-percentage": 100 }),
};

describe("reply invariants", () => {
  test("every rule has a reply that breaks it", () => {
    expect(Object.keys(BROKEN).sort()).toEqual(REPLY_RULES.map((r) => r.name).sort());
  });

  test.each(REPLY_RULES.map((r) => r.name))("%s: caught, and nothing else fires", (name) => {
    const make = BROKEN[name];
    if (!make) throw new Error(`no broken reply for ${name}`);
    const problems = replyProblems(make(), "source");
    expect(problems.map((p) => p.split(":")[0])).toEqual([name]);
  });

  test.each(fixtures)("$file keeps every rule", (f) => {
    expect(replyProblems(f.qmp, f.side)).toEqual([]);
  });

  test("a running reply's byte counters are not judged against its own transferred", () => {
    // populate_ram_info reads transferred first: seen 2.7 MB apart on a loaded host (11.1).
    const i = completed();
    i.status = "active";
    if (i.ram) i.ram["precopy-bytes"] = i.ram.transferred + 2_757_213;
    expect(replyProblems(i, "source")).toEqual([]);
  });

  test("mbps is not judged after a postcopy", () => {
    const i = completed();
    if (i.ram) {
      i.ram.mbps /= 8;
      i.ram["postcopy-bytes"] = 4096;
    }
    expect(replyProblems(i, "source")).toEqual([]);
  });

  test("setup-time 1 ms over total-time (two clocks, whole ms) passes", () => {
    const i = completed();
    expect(
      replyProblems({ ...i, "setup-time": (i["total-time"] ?? 0) + 1, downtime: 1 }, "source"),
    ).toEqual([]);
  });

  test("source-only rules do not judge the destination", () => {
    expect(replyProblems(withRam({ remaining: 4096 }), "destination")).toEqual([]);
  });
});

describe("series invariants", () => {
  const active = (totalTime: number, setupTime = 3): MigrationInfo => ({
    ...completed(),
    status: "active",
    "total-time": totalTime,
    "setup-time": setupTime,
  });

  test("total-time keeping pace with the wall clock passes", () => {
    expect(
      seriesProblems([
        { t: 100, data: active(90) },
        { t: 600, data: active(580) },
        { t: 1100, data: active(1095) },
      ]),
    ).toEqual([]);
  });

  test("total-time running in the wrong unit is caught", () => {
    const problems = seriesProblems([
      { t: 100, data: active(90) },
      { t: 1100, data: active(1) },
    ]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/total-time went from 90 ms/);
  });

  test("total-time running ten times too fast is caught", () => {
    expect(
      seriesProblems([
        { t: 100, data: active(90) },
        { t: 1100, data: active(10_090) },
      ]),
    ).toHaveLength(1);
  });

  test("with send times: a reply held back 9.6 s in delivery passes (7.2 under a throttle)", () => {
    expect(
      seriesProblems([
        { t: 1015, sentT: 1010, data: active(910) },
        { t: 10712, sentT: 1065, data: active(967) },
      ]),
    ).toEqual([]);
  });

  test("with send times: total-time moving less than the wall time between asks is caught", () => {
    const problems = seriesProblems([
      { t: 1015, sentT: 1010, data: active(910) },
      { t: 2100, sentT: 2000, data: active(930) },
    ]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/outside the 983\.\.1092 ms of wall time/);
    expect(
      seriesProblems([
        { t: 100, sentT: 95, data: active(90) },
        { t: 160, sentT: 150, data: active(10_090) },
      ]),
    ).toHaveLength(1);
  });

  test("setup-time changing while active is caught", () => {
    const problems = seriesProblems([
      { t: 100, data: active(90, 3) },
      { t: 200, data: active(190, 7) },
    ]);
    expect(problems).toEqual(["setup-time changed from 3 ms (t=100) to 7 ms (t=200)"]);
  });

  test("setup-time read as 0 just after the status turned active, then set, passes", () => {
    expect(
      seriesProblems([
        { t: 100, data: active(2, 0) },
        { t: 200, data: active(102, 5) },
      ]),
    ).toEqual([]);
  });

  test("a new attempt (setup) starts a new series", () => {
    expect(
      seriesProblems([
        { t: 100, data: active(90, 3) },
        { t: 150, data: { status: "setup" } },
        { t: 200, data: active(20, 9) },
      ]),
    ).toEqual([]);
  });

  const moving = (t: number, transferred: number, precopy: number): MigrationInfo => {
    const i = active(t);
    if (i.ram) {
      i.ram.transferred = transferred;
      i.ram["precopy-bytes"] = precopy;
      i.ram["downtime-bytes"] = 0;
      i.ram["postcopy-bytes"] = 0;
    }
    return i;
  };

  test("transferred may lag the previous reply's counters by a QEMUFile's buffer", () => {
    expect(
      seriesProblems([
        { t: 100, data: moving(90, 1_000_000, 1_127_030) },
        { t: 600, data: moving(590, 1_000_000, 9_000_000) },
      ]),
    ).toEqual([]);
  });

  test("transferred short of the previous reply's counters by more than a buffer is caught", () => {
    const problems = seriesProblems([
      { t: 100, data: moving(90, 1_000_000, 2_000_000) },
      { t: 600, data: moving(590, 2_000_000 - 64 * 4096 - 32768 - 1, 9_000_000) },
    ]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^transferred at t=600 against the counters at t=100: ram.transferred \d+ is less than/,
    );
  });

  test("the timeline check names side and time", () => {
    const timeline = new Timeline();
    timeline.record("source", "query-migrate", withRam({ remaining: 8192 }));
    timeline.record("destination", "query-migrate", { status: "completed" });
    const problems = invariantProblems(timeline);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^source query-migrate at t=\d+ ms: remaining = 0 once completed/);
  });
});
