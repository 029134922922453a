import { describe, expect, test } from "vitest";
import { Timeline } from "../migration/timeline.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";
import { MiB } from "../util/units.ts";
import { notConverging, syncSamples, whyNotConverging } from "./convergence.ts";

/** A source reply while active at the given sync count with `remaining` bytes of RAM left. */
function active(
  syncs: number,
  remaining: number,
  extra: Partial<MigrationInfo> = {},
): MigrationInfo {
  return {
    status: "active",
    "expected-downtime": 5183,
    ram: {
      transferred: syncs * 64 * MiB,
      remaining,
      total: 128 * MiB,
      duplicate: 0,
      normal: 0,
      "normal-bytes": 0,
      mbps: 160,
      "dirty-sync-count": syncs,
      "page-size": 4096,
      "pages-per-second": 4880,
      "dirty-pages-rate": 4870,
    },
    ...extra,
  };
}

function timeline(replies: MigrationInfo[]): Timeline {
  const t = new Timeline();
  for (const r of replies) t.record("source", "query-migrate", r);
  return t;
}

describe("convergence verdict", () => {
  test("one sample per new dirty-sync-count, system-wide remaining preferred", () => {
    const t = timeline([
      active(1, 100 * MiB),
      active(1, 90 * MiB),
      active(2, 40 * MiB, { remaining: 41 * MiB }),
      { status: "completed" },
    ]);
    expect(syncSamples(t).map((s) => [s.pass, s.remaining])).toEqual([
      [1, 100 * MiB],
      [2, 41 * MiB],
    ]);
  });

  test("flat at what one downtime window carries is the switchover coming, not a stall", () => {
    // 11.1 on aarch64: ten syncs in 5 ms with nothing left, then completed.
    const empty = timeline([1, 2, 3, 4, 5, 6, 7, 8].map((n) => active(n, 0)));
    expect(notConverging(empty, { "downtime-limit": 300, "max-bandwidth": 20_000_000 })).toBe(
      undefined,
    );
    const under = timeline([1, 2, 3, 4, 5, 6, 7].map((n) => active(n, 5 * MiB)));
    expect(notConverging(under, { "downtime-limit": 300, "max-bandwidth": 20_000_000 })).toBe(
      undefined,
    );
    // Unknown limits: only nothing at all left counts as due.
    expect(notConverging(empty, {})).toBe(undefined);
    expect(notConverging(under, {})).toMatch(/not converging/);
  });

  test("remaining flat over the passes: not converging, with QEMU's figures", () => {
    const t = timeline([1, 2, 3, 4, 5, 6, 7].map((n) => active(n, 20 * MiB - n * 1000)));
    const reason = notConverging(t, { "downtime-limit": 300, "max-bandwidth": 20_000_000 });
    expect(reason).toMatch(/^the migration is not converging: remaining was \d+ bytes at pass 2/);
    expect(reason).toContain("expected downtime 5183 ms against downtime-limit 300 ms");
    expect(reason).toContain(
      "the guest dirties 19.0 MiB/s while 19.1 MiB/s is sent (max-bandwidth 19.1 MiB/s)",
    );
  });

  test("remaining falling pass after pass: converging", () => {
    const t = timeline([1, 2, 3, 4, 5, 6, 7].map((n) => active(n, (100 * MiB) / 3 ** n)));
    expect(notConverging(t, {})).toBeUndefined();
  });

  test("passes recorded before the wait began (a held migration) do not count", () => {
    const t = timeline([1, 2, 3, 4, 5, 6, 7].map((n) => active(n, 20 * MiB)));
    expect(notConverging(t, {})).toBeDefined();
    expect(notConverging(t, {}, { sinceT: t.now() + 1 })).toBeUndefined();
  });

  test("too few passes to judge: no verdict", () => {
    const t = timeline([1, 2, 3].map((n) => active(n, 20 * MiB)));
    expect(notConverging(t, {})).toBeUndefined();
  });

  test("the explanation names only what QEMU reported", () => {
    expect(whyNotConverging({ status: "active" }, {})).toBe("");
  });
});
