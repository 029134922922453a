import { describe, expect, test } from "vitest";
import { Timeline } from "../migration/timeline.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";
import { loadInfoMigrateFixtures } from "./info-migrate-fixture.ts";
import { counterProblems, hmpAgainstQmpProblems, timelineProblems } from "./timeline-checks.ts";

const fixtures = loadInfoMigrateFixtures(
  new URL("../fixtures/info-migrate/", import.meta.url).pathname,
);
const fixture = (name: string) => {
  const f = fixtures.find((x) => `${x.qemu}-${x.side}-${x.phase}` === name);
  if (!f) throw new Error(`no fixture ${name}`);
  return f;
};

/** A timeline holding one bracketed snapshot: query-migrate, info migrate, query-migrate. */
function bracket(before: MigrationInfo, text: string, after: MigrationInfo = before): Timeline {
  const t = new Timeline();
  t.record("source", "query-migrate", before);
  t.record("source", "info-migrate", text);
  t.record("source", "query-migrate", after);
  return t;
}

describe("timeline checks over recorded real output", () => {
  test("a real snapshot of every version agrees with itself", () => {
    for (const v of ["7.2.22", "10.0.2", "11.1.3"]) {
      for (const phase of ["active", "completed", "failed"]) {
        const f = fixture(`${v}-source-${phase}`);
        expect(timelineProblems(bracket(f.qmp, f.hmp)), `${v} ${phase}`).toEqual([]);
      }
    }
  });

  test("while live, a member that moved between the two reads may match either of them", () => {
    const f = fixture("11.1.3-source-active");
    const setup = f.qmp["setup-time"] ?? 0;
    const later = { ...f.qmp, "setup-time": setup + 7 };
    // setup-time is set just after the status turns active: HMP printed the earlier value.
    expect(hmpAgainstQmpProblems(bracket(f.qmp, f.hmp, later), "source")).toEqual([]);
    // Matching neither read is still a problem.
    const other = { ...f.qmp, "setup-time": setup + 3 };
    expect(hmpAgainstQmpProblems(bracket(other, f.hmp, later), "source").join("\n")).toMatch(
      new RegExp(`setup-time: HMP ${setup} but QMP ${setup + 7}`),
    );
  });

  test("in a final state too: 7.2 says completed before it fills total-time (HMP matching the earlier read)", () => {
    const f = fixture("7.2.22-source-completed");
    const hmp = f.hmp.replace(/total time: \d+ ms/, "total time: 0 ms");
    const early = { ...f.qmp, "total-time": 0 };
    expect(hmpAgainstQmpProblems(bracket(early, hmp, f.qmp), "source")).toEqual([]);
    expect(hmpAgainstQmpProblems(bracket(f.qmp, hmp, f.qmp), "source").join("\n")).toMatch(
      /total-time: HMP 0 but QMP \d+/,
    );
  });

  test("HMP showing another state than a stable QMP is a problem", () => {
    const active = fixture("11.1.3-source-active");
    const completed = fixture("11.1.3-source-completed");
    const problems = hmpAgainstQmpProblems(bracket(active.qmp, completed.hmp), "source");
    expect(problems.join("\n")).toMatch(
      /source info migrate at t=\d+ ms: status: HMP "completed" but QMP "active"/,
    );
  });

  test("while the status moved, HMP may show either state, not a third", () => {
    const active = fixture("7.2.22-source-active");
    const completed = fixture("7.2.22-source-completed");
    const failed = fixture("7.2.22-source-failed");
    expect(
      hmpAgainstQmpProblems(bracket(active.qmp, completed.hmp, completed.qmp), "source"),
    ).toEqual([]);
    expect(
      hmpAgainstQmpProblems(bracket(active.qmp, failed.hmp, completed.qmp), "source").join("\n"),
    ).toMatch(
      /HMP status "failed" is neither of the QMP statuses read around it \(active, completed\)/,
    );
  });

  test("an unknown HMP line is a problem", () => {
    const f = fixture("10.0.2-source-active");
    expect(
      hmpAgainstQmpProblems(bracket(f.qmp, `${f.hmp}frobnication: 3\r\n`), "source").join("\n"),
    ).toMatch(/has lines the parser does not know: \["frobnication: 3"\]/);
  });

  test("a counter going down within an attempt is a problem; a new setup starts afresh", () => {
    const { qmp } = fixture("10.0.2-source-active");
    const ram = qmp.ram as NonNullable<MigrationInfo["ram"]>;
    const t = new Timeline();
    t.record("source", "query-migrate", qmp);
    t.record("source", "query-migrate", {
      ...qmp,
      ram: { ...ram, transferred: ram.transferred - 1 },
    });
    expect(counterProblems(t)).toEqual([
      expect.stringMatching(
        new RegExp(`^source ram.transferred went down from ${ram.transferred} `),
      ),
    ]);
    const again = new Timeline();
    again.record("source", "query-migrate", qmp);
    again.record("source", "query-migrate", { status: "setup" });
    again.record("source", "query-migrate", { ...qmp, ram: { ...ram, transferred: 1 } });
    expect(counterProblems(again)).toEqual([]);
  });
});
