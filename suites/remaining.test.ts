// The system-wide `remaining` of query-migrate and the `Remaining:` line of info migrate
// (system-wide-remaining.patch, QEMU 11.1). Whether a binary has it is read from its own schema;
// where it does not, its absence is asserted on both interfaces.
//
// Measured on 11.1.3 (TCG, 128 MiB guest dirtying 111 MiB, no VFIO): `remaining` is a cached
// estimate that lags `ram.remaining` by about one 100 ms rate-limit window of transfer (3.25 MiB
// at 32 MiB/s, up to 22 MiB at 128 MiB/s), and reads 0 for a short window before each dirty-bitmap
// sync while ram.remaining is the whole dirty range. The tolerance below follows from that.

import { expect } from "vitest";
import {
  checkAbsent,
  checkHmpAgreesWithQmp,
  checkPresentWhileActive,
  snapshotsFromTimeline,
} from "../harness/checks/remaining-checks.ts";
import { detectStall, passSamples } from "../harness/checks/stall-detector.ts";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import type { MigrationPair } from "../harness/migration/pair.ts";
import type { Scenario } from "../harness/scenario/scenario.ts";
import { MiB } from "../harness/util/units.ts";
import { forEachQemu, smokeOnX86Only, test, where } from "./migration-test.ts";

/** Source bandwidth while the migration is held active. */
const HOLD_BANDWIDTH = 32 * MiB;
/**
 * The cached value is ram.remaining as it stood at some moment of the last five 100 ms
 * rate-limit windows (about one usually; four seen once on a loaded 2-core machine), +- 1 MiB:
 * between the lowest and the highest read in that span, plus one read interval's fall.
 * Not a byte count from the bandwidth: zero pages cost almost nothing to send, so where RAM is
 * mostly zero (aarch64 virt's two 64 MiB flash blocks) ram.remaining falls far faster.
 */
const LAG_WINDOW_MS = 500;
const LAG_SLACK = MiB;
const STALL_PASSES = 2;

const hasRemaining = (pair: MigrationPair) => pair.features("source").topLevelRemaining;
const lacksRemaining = (pair: MigrationPair) =>
  hasRemaining(pair)
    ? undefined
    : `QEMU ${pair.source.binary.version}'s schema has no MigrationInfo.remaining (system-wide-remaining patch, QEMU 11.1); its absence is checked by "remaining is absent"`;

/** 64 MiB, a guest dirtying twice what the held source may send, snapshots every 20 ms. */
function held(passes: number, rest: Partial<Scenario> = {}): Scenario {
  return {
    memoryMiB: 64,
    pollIntervalMs: 20,
    guest: { kind: "bootblock", dirtyRateMiBps: 2 * (HOLD_BANDWIDTH / MiB) },
    hold: { passes, parameters: { "max-bandwidth": HOLD_BANDWIDTH, "downtime-limit": 10 } },
    ...rest,
  };
}

/** Active snapshots of the source: remaining within the lag bound of ram.remaining. */
function expectRemainingTracksRam(pair: MigrationPair): void {
  const active = pair.timeline
    .of("source", "query-migrate")
    .filter((s) => s.data.status === "active" && s.data.ram);
  expect(active.length, "active source snapshots").toBeGreaterThan(10);
  const lags: number[] = [];
  let staleZeros = 0;
  for (const { t, data } of active) {
    expect(data.remaining, `source remaining at t=${t} ms (status active)`).toBeTypeOf("number");
    const remaining = data.remaining as number;
    const ram = data.ram?.remaining ?? 0;
    if (remaining === 0 && ram > 0) {
      staleZeros++;
      continue;
    }
    const lag = remaining - ram;
    lags.push(lag);
    const recent = active
      .filter((x) => x.t >= t - LAG_WINDOW_MS && x.t <= t)
      .map((x) => x.data.ram?.remaining ?? 0);
    // The cached value may come from between two reads: up to one interval's worth of pages
    // above the later one (right after a dirty-bitmap sync, say), the most seen in the window.
    const step = Math.max(0, ...recent.slice(1).map((r, i) => (recent[i] ?? 0) - r));
    // Before the first active read ram.remaining was the whole of RAM (the first sync's bitmap).
    const beforeFirst = t - LAG_WINDOW_MS < (active[0]?.t ?? 0);
    const low = Math.min(...recent);
    const high = beforeFirst ? (data.ram?.total ?? 0) : Math.max(...recent) + step;
    expect(
      remaining >= low - LAG_SLACK && remaining <= high + LAG_SLACK,
      `t=${t} ms: remaining ${remaining} vs ram.remaining ${ram} (lag ${lag} bytes): not what ram.remaining read in the last ${LAG_WINDOW_MS} ms (${low}..${high}) +- ${LAG_SLACK}`,
    ).toBe(true);
  }
  // The stale zero is a short window before each sync, never the usual reading.
  expect(staleZeros, `snapshots reading 0 while RAM was dirty, of ${active.length}`).toBeLessThan(
    active.length / 5,
  );
  lags.sort((x, y) => x - y);
  pair.timeline.record(
    "harness",
    "note",
    `remaining - ram.remaining over ${lags.length} samples: min ${lags[0]}, median ${lags[lags.length >> 1]}, max ${lags.at(-1)}; stale zeros ${staleZeros}`,
  );
}

forEachQemu(
  "system-wide remaining",
  (b) => {
    test(`remaining is reported while active, agrees with ram.remaining and HMP, and is dropped at completion ${where(b)}`, async ({
      scenario,
    }) => {
      const { pair } = await scenario(
        held(4, { skipIf: lacksRemaining, hooks: { whileHeld: expectRemainingTracksRam } }),
      );
      // HMP's Remaining: stands for the QMP value (size_to_str rounding, between the two QMP reads
      // around it) on both sides, and is printed exactly when query-migrate has the member; the
      // destination has neither.
      const snapshots = snapshotsFromTimeline(pair.timeline);
      expect(snapshots.filter((x) => x.after.status === "active").length).toBeGreaterThan(5);
      expect(checkPresentWhileActive(snapshots)).toEqual([]);
      expect(checkHmpAgreesWithQmp(snapshots)).toEqual([]);
      expect(
        checkAbsent(snapshots.filter((x) => x.side === "destination")),
        "the destination reports no system-wide remaining",
      ).toEqual([]);

      // At completion 11.1 reports no remaining (fill_source_migration_info fills it only while
      // the migration runs, the switchover's `device` state included): neither member nor HMP line.
      // A fresh snapshot: the one that saw `completed` may have printed HMP while still in `device`.
      const done = await pair.snapshot("source");
      const final = pair.timeline.hmpBrackets("source").at(-1);
      expect(final?.stable && final.before.status, "a stable completed snapshot").toBe("completed");
      expect(done.migration.remaining, "source remaining after completion").toBeUndefined();
      expect(
        parseInfoMigrate(done.infoMigrate).remaining,
        "source HMP Remaining: after completion",
      ).toBeUndefined();
      // In the switchover's `device` state (10.x on) it is still reported.
      for (const { t, data } of pair.timeline.of("source", "query-migrate")) {
        if (data.status !== "device") continue;
        expect(data.remaining, `source remaining in state device at t=${t} ms`).toBeTypeOf(
          "number",
        );
      }
    });

    test(
      `remaining is absent on both interfaces where the schema lacks it ${where(b)}`,
      smokeOnX86Only(b),
      async ({ scenario }) => {
        const { pair } = await scenario(
          held(2, {
            skipIf: (p) =>
              hasRemaining(p)
                ? `QEMU ${p.source.binary.version}'s schema has MigrationInfo.remaining: checked by "remaining is reported while active"`
                : undefined,
          }),
        );
        expect(checkAbsent(snapshotsFromTimeline(pair.timeline))).toEqual([]);
        expect(
          pair.timeline.of("source", "query-migrate").some((s) => s.data.status === "active"),
        ).toBe(true);
      },
    );

    test(`stall detection flags a forced non-converging migration ${where(b)}`, {
      tags: ["full"],
    }, async ({ scenario }) => {
      await scenario(
        held(6, {
          skipIf: lacksRemaining,
          hooks: {
            whileHeld: (pair) => {
              const verdict = detectStall(passSamples(pair.timeline), { passes: STALL_PASSES });
              expect(verdict.samples.length, "usable pass samples").toBeGreaterThan(STALL_PASSES);
              expect(verdict.stalled, verdict.reason).toBe(true);
              expect(pair.timeline.last("source", "query-migrate")?.data.status).toBe("active");
            },
          },
        }),
      );
    });

    test(`stall detection does not flag a migration converging over several passes ${where(b)}`, {
      tags: ["full"],
    }, async ({ scenario }) => {
      // Bandwidth 3x the guest's paced dirty rate: each pass leaves about a third of the one
      // before, so it takes several passes (each judged) before the 2 ms downtime limit is met.
      const rate = 8;
      const { pair } = await scenario({
        memoryMiB: 64,
        pollIntervalMs: 20,
        skipIf: lacksRemaining,
        guest: { kind: "bootblock", dirtyRateMiBps: rate, rangeEndMiB: 48 },
        parameters: { source: { "max-bandwidth": 3 * rate * MiB, "downtime-limit": 2 } },
      });
      const samples = passSamples(pair.timeline);
      pair.timeline.record("harness", "note", `pass samples ${JSON.stringify(samples)}`);
      const verdict = detectStall(samples, { passes: STALL_PASSES });
      expect(
        verdict.samples.length,
        `enough passes to judge: ${JSON.stringify(samples)}`,
      ).toBeGreaterThan(STALL_PASSES);
      expect(verdict.stalled, verdict.reason).toBe(false);
    });
  },
  // One of the four families the second target must pass in the smoke set too.
  { smoke: "all" },
);
