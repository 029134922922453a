// migrate_cancel in every state of the source's MigrationStatus (harness/checks/cancel-states.ts,
// generated from the binary's own enum with a guard), and the destination's own ways to abort.
// Whatever was cancelled: the source ends cancelled (or unchanged where cancel is a no-op), its
// VM runs, its guest memory is intact, the destination failed or exited as declared, both sides'
// QMP and HMP agree, MIGRATION events are on a legal path, and the source migrates again.

import { expect } from "vitest";
import {
  assertEveryStateClassified,
  type CancelCase,
  reachableStates,
} from "../harness/checks/cancel-states.ts";
import type { MigrationPair } from "../harness/migration/pair.ts";
import type { Scenario } from "../harness/scenario/scenario.ts";
import {
  expectDestinationBroke,
  expectNothingLost,
  expectSideEnded,
  incomingOptions,
} from "./after-failure.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;
/** The smoke set: one cancel per binary; the other states run in the full set. */
const SMOKE = new Set(["active"]);

/** What each case checks, for its name. */
const EXPECTED: Record<CancelCase["reach"], string> = {
  "before-migrate": "a no-op on both sides, the migration after it completes",
  "on-setup-event":
    "source cancelled, destination failed or exited, VM and memory intact, migrates again",
  "held-active":
    "source cancelled, destination failed or exited, VM and memory intact, migrates again",
  "pause-before-switchover":
    "source cancelled and its stopped VM resumed, destination failed or exited, memory intact, migrates again",
  "on-cancelling-event":
    "source cancelled, destination failed or exited, VM and memory intact, migrates again",
  "after-cancelled": "source stays cancelled, VM and memory intact, migrates again",
  "after-completed": "a no-op: both sides stay completed",
  "after-failed": "a no-op: source stays failed, VM and memory intact, migrates again",
};

/** The source's MIGRATION status when migrate_cancel was sent: what the test really cancelled. */
function statusAtCancel(pair: MigrationPair): string {
  // In arrival order, up to the last migrate_cancel (where a first cancel brings the source to
  // cancelling, the second one is the one under test).
  const entries = pair.timeline.entries;
  let status = "none";
  let atCancel = "none";
  for (const e of entries) {
    if (e.side !== "source") continue;
    if (e.kind === "event" && e.data.event === "MIGRATION") status = String(e.data.data?.status);
    if (e.kind === "command" && e.data.command === "migrate_cancel") atCancel = status;
  }
  return atCancel;
}

/** The scenario that holds the source in `c.state` and cancels it there. */
function cancelScenario(c: CancelCase): Scenario {
  const base: Scenario = {
    memoryMiB: MEMORY_MIB,
    ...(c.destination === "failed-or-exited" ? { incoming: incomingOptions } : {}),
  };
  switch (c.reach) {
    case "before-migrate":
      return {
        ...base,
        hooks: {
          // Nothing runs yet: a no-op on both sides, and the migration after it is unharmed.
          beforeMigrate: async (pair) => {
            await pair.cancel("source");
            await pair.cancel("destination");
          },
        },
      };
    case "on-setup-event":
      // migrate returns in setup (the connection is asynchronous): cancel at once, as qtest does
      // on the setup event.
      return {
        ...base,
        expect: { status: "cancelled" },
        hooks: {
          afterStart: async (p) => {
            await p.cancel();
          },
        },
      };
    case "held-active":
      return {
        ...base,
        hold: { passes: 1 },
        expect: { status: "cancelled" },
        hooks: {
          whileHeld: async (p) => {
            await p.cancel();
          },
        },
      };
    case "pause-before-switchover":
      return {
        ...base,
        capabilities: { both: { "pause-before-switchover": true } },
        expect: { status: "cancelled" },
        hooks: {
          afterStart: async (p) => {
            await p.waitForStatus("source", "pre-switchover");
            await p.cancel();
          },
        },
      };
    case "on-cancelling-event":
      return {
        ...base,
        hold: { passes: 1 },
        expect: { status: "cancelled" },
        hooks: {
          whileHeld: async (p) => {
            const since = p.timeline.now();
            await p.cancel();
            await p.waitForEvent("source", "MIGRATION", (d) => d.status === "cancelling", {
              sinceT: since,
            });
            await p.cancel();
          },
        },
      };
    case "after-cancelled":
      return {
        ...base,
        hold: { passes: 1 },
        expect: { status: "cancelled" },
        hooks: {
          whileHeld: async (p) => {
            await p.cancel();
            await p.waitForStatus("source", "cancelled", { failOn: [] });
            await p.cancel();
          },
        },
      };
    case "after-completed":
      return {
        ...base,
        hooks: {
          afterMigrate: async (p) => {
            await p.cancel();
          },
        },
      };
    case "after-failed":
      return {
        ...base,
        // The destination listens, but nothing reaches it: the proxy in between is cut before
        // the source connects. A real transport stays for the migration after it.
        faultProxy: true,
        expect: { status: "failed", errorDesc: /refused/i },
        hooks: {
          afterIncoming: (p) => p.proxy?.cut(),
          afterMigrate: async (p) => {
            await p.cancel();
          },
        },
      };
  }
}

forEachQemu("cancel", (b) => {
  test(`every MigrationStatus state is classified for cancel ${where(b)}`, async ({
    launchPair,
  }) => {
    const pair = await launchPair({
      binary: b.path,
      accel: b.accelRequest,
      guest: { kind: "none" },
    });
    const table = assertEveryStateClassified(pair.features("source").migrationStatuses, b.label);
    expect(table.cases.length).toBeGreaterThanOrEqual(8);
  });

  for (const c of reachableStates()) {
    const tags = SMOKE.has(c.state) ? [] : ["full"];
    test(`migrate_cancel in "${c.state}": ${EXPECTED[c.reach]} ${where(b)}`, {
      tags,
    }, async ({ scenario, skip }) => {
      const { pair, result } = await scenario({
        ...cancelScenario(c),
        skipIf: (p) =>
          p.features("source").migrationStatuses.includes(c.state)
            ? undefined
            : `QEMU ${p.source.binary.version} has no migration state "${c.state}"`,
      });
      if (!result) return skip("no result");
      const cancelledIn = statusAtCancel(pair);
      pair.timeline.record("harness", "note", `migrate_cancel sent in "${cancelledIn}"`);
      const src = await pair.finalState(result.outcome);
      if (c.sourceEnds === "cancelled") {
        expectSideEnded(pair, "source", src.source, "cancelled");
        await waitDestinationBroke(pair);
        expectDestinationBroke(pair, await pair.finalState("cancelled"));
        await expectNothingLost(pair, MEMORY_MIB);
        return;
      }
      // A no-op: the state the source was in, with no further MIGRATION event.
      if (c.reach === "after-completed") {
        expect(src.source.migration.status, "source after cancel in completed").toBe("completed");
        expect(src.source.events.at(-1)).toBe("completed");
        expect(src.destination.migration.status).toBe("completed");
      } else if (c.reach === "after-failed") {
        expectSideEnded(pair, "source", src.source, "failed");
        expect((await pair.source.queryStatus()).running, "source VM runs").toBe(true);
        await expectNothingLost(pair, MEMORY_MIB);
      } else {
        expectCompletedMigration(pair, result, MEMORY_MIB);
        const before = pair.timeline.of("source", "command")[0];
        expect(before, "something was sent").toBeDefined();
        expect(
          pair.timeline.of("source", "event").filter((e) => e.data.data?.status === "cancelling"),
          "no cancelling before migrate",
        ).toEqual([]);
      }
    });
  }
});

forEachQemu("cancel with exit-on-error", (b) => {
  // QEMU's default: a destination whose incoming migration fails exits (the only way before
  // 9.1, where migrate-incoming has no exit-on-error).
  test(`migrate_cancel in "active" with the destination's default exit-on-error: it exits with code 1 and says why ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      hold: { passes: 1 },
      exits: { destination: { exitCode: 1 } },
      expect: { status: "cancelled" },
      hooks: {
        whileHeld: async (p) => {
          await p.cancel();
        },
      },
    });
    expectSideEnded(pair, "source", result.source, "cancelled");
    await pair.destination.exited;
    expect(pair.describeExit("destination")).toMatch(
      /^destination QEMU \(pid \d+\) exited with code 1 at t=\d+ ms: .*load of migration failed/,
    );
    await expectNothingLost(pair, MEMORY_MIB);
  });
});

forEachQemu("the destination's own abort", (b) => {
  // Read from QEMU's source and checked here: migrate_cancel acts on the outgoing migration only,
  // so on a destination it is accepted and does nothing (7.2, 10.0, 11.1); yank of the
  // "migration" instance (6.0+) shuts the incoming channels down.
  test(`migrate_cancel on the destination is accepted and changes nothing; the migration completes ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    let during = "";
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      hold: { passes: 1 },
      hooks: {
        whileHeld: async (p) => {
          expect(await p.cancel("destination")).toEqual({});
          await new Promise((r) => setTimeout(r, 1000));
          const [s, d] = await Promise.all([p.snapshot("source"), p.snapshot("destination")]);
          during = `${s.migration.status}/${d.migration.status}`;
        },
      },
    });
    expect(during, "source/destination one second after the destination's migrate_cancel").toBe(
      "active/active",
    );
    expectCompletedMigration(pair, result, MEMORY_MIB);
  });

  test(`yank of the destination's migration: destination failed or exited, source failed, VM and memory intact, migrates again ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      incoming: incomingOptions,
      hold: { passes: 1 },
      expect: { status: "failed" },
      hooks: {
        whileHeld: async (p) => {
          await p.execute("destination", "yank", { instances: [{ type: "migration" }] });
        },
      },
    });
    expectSideEnded(pair, "source", result.source, "failed");
    await waitDestinationBroke(pair);
    expectDestinationBroke(pair, await pair.finalState("failed"));
    await expectNothingLost(pair, MEMORY_MIB);
  });
});

/** The destination sees the source's cancel as a broken stream: failed, or exited (declared). */
async function waitDestinationBroke(pair: MigrationPair): Promise<void> {
  if (!pair.destination.isRunning()) return;
  if (!pair.features("destination").migrateIncomingHasExitOnError) {
    await pair.destination.exited;
    return;
  }
  await pair.waitForStatus("destination", "failed", { failOn: ["completed"] });
}
