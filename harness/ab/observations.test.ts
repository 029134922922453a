import { describe, expect, test } from "vitest";
import { snapshotFixture } from "./fixtures.test-helpers.ts";
import { diffObservations, hmpLabels, memberKind, memberPaths, observe } from "./observations.ts";

describe("per-phase observations", () => {
  test("member paths look through objects and arrays", () => {
    const paths = memberPaths({
      status: "active",
      ram: { total: 1 },
      "socket-address": [{ port: "1" }],
    });
    expect([...paths.keys()].sort()).toEqual([
      "ram",
      "ram.total",
      "socket-address",
      "socket-address[].port",
      "status",
    ]);
  });

  test("a number's meaning is whether it was ever non-zero", () => {
    expect(memberKind([0, 0])).toBe("number (always 0)");
    expect(memberKind([0, 5])).toBe("number (non-zero)");
    expect(memberKind(["a", 1])).toBe("number|string");
  });

  test("HMP labels keep indentation so sub-lines stay distinct", () => {
    const labels = hmpLabels(snapshotFixture("11.1.3-source-active").infoMigrate);
    expect(labels).toEqual([
      "Status",
      "Time (ms)",
      "Remaining",
      "RAM info",
      "  Throughput (Mbps)",
      "  Sizes",
      "  Transfers",
      "    Channels",
      "    Page Types",
      "  Page Rates (pps)",
      "  Others",
    ]);
  });
});

describe("diffObservations", () => {
  test("removing the top-level remaining from a real 11.1.3 run: the member and the HMP line vanish, on the source only", () => {
    const withIt = [
      snapshotFixture("11.1.3-source-active"),
      snapshotFixture("11.1.3-destination-active"),
    ];
    const without = withIt.map((s) => {
      const { remaining: _a, ...before } = s.before;
      const { remaining: _b, ...after } = s.after;
      return {
        ...s,
        before,
        after,
        infoMigrate: s.infoMigrate.replace(/^Remaining:[^\n]*\n/m, ""),
      };
    });
    const forward = diffObservations(observe(without), observe(withIt));
    expect(forward.changes.map((c) => c.text)).toEqual([
      "query-migrate remaining appears (source, active): number (non-zero)",
      'info migrate line "Remaining:" appears (source, active)',
    ]);
    expect(diffObservations(observe(withIt), observe(without)).changes.map((c) => c.kind)).toEqual([
      "member-vanishes",
      "hmp-vanishes",
    ]);
  });

  test("a member that is always 0 on one build and not on the other changes meaning", () => {
    const a = snapshotFixture("11.1.3-source-active");
    const zero = {
      ...a,
      before: { ...a.before, remaining: 0 },
      after: { ...a.after, remaining: 0 },
    };
    expect(diffObservations(observe([a]), observe([zero])).changes.map((c) => c.text)).toEqual([
      "query-migrate remaining changes meaning (source, active): number (non-zero) on the base, number (always 0) with the patch",
    ]);
  });

  test("phases seen on one build only are listed, not compared", () => {
    const a = snapshotFixture("11.1.3-source-active");
    const d = diffObservations(observe([a, { ...a, phase: "setup" }]), observe([a]));
    expect(d.changes).toEqual([]);
    expect(d.unmatched).toEqual([{ side: "source", phase: "setup", seenOn: "base" }]);
  });
});
