// A side killed mid-migration: SIGKILL of the destination while active leaves the source failed
// with its VM running and its memory intact (and it migrates again); SIGKILL of the source leaves
// the destination failed or exited. The failure headline names the first cause.

import { expect } from "vitest";
import { holdParameters } from "../harness/migration/convergence.ts";
import type { MigrationPair } from "../harness/migration/pair.ts";
import { expectNothingLost, expectSideEnded } from "./after-failure.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;

/** A bare pair held active (limits it cannot converge under), for a test that kills a side. */
async function activePair(pair: MigrationPair): Promise<void> {
  await pair.setParameters("source", holdParameters(32));
  await pair.waitForGuest();
  const uri = await pair.startIncoming(incomingOptionsNoDeclare(pair));
  await pair.startMigration(uri);
  await pair.waitForPasses(1);
}

/** exit-on-error=false where the destination has it (a test declares exits itself). */
function incomingOptionsNoDeclare(pair: MigrationPair): { exitOnError?: boolean } {
  return pair.features("destination").migrateIncomingHasExitOnError ? { exitOnError: false } : {};
}

forEachQemu("a side killed", (b) => {
  test(`destination SIGKILLed while active: source failed, VM and memory intact, migrates again ${where(b)}`, async ({
    scenario,
  }) => {
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      hold: { passes: 1 },
      exits: { destination: { signal: "SIGKILL" } },
      expect: { status: "failed" },
      hooks: {
        whileHeld: async (p) => {
          p.destination.signal("SIGKILL");
          await p.destination.exited;
        },
      },
    });
    expect(pair.describeExit("destination")).toMatch(
      /^destination QEMU \(pid \d+\) was killed by SIGKILL at t=\d+ ms$/,
    );
    expectSideEnded(pair, "source", result.source, "failed");
    await expectNothingLost(pair, MEMORY_MIB);
  });

  test(`an undeclared destination kill: the headline names it, then the source's state ${where(b)}`, {
    tags: ["full"],
  }, async ({ launchPair }) => {
    const pair = await launchPair({
      binary: b.path,
      accel: b.accelRequest,
      memoryMiB: MEMORY_MIB,
    });
    await activePair(pair);
    pair.destination.signal("SIGKILL");
    const error = await pair.waitForStatus("source", "completed").catch((e: Error) => e);
    // Declared now, so teardown does not count it twice.
    pair.expectExit("destination", { signal: "SIGKILL" });
    expect(error).toBeInstanceOf(Error);
    const headline = String((error as Error).message).split("\n")[0];
    pair.timeline.record("harness", "note", `headline: ${headline}`);
    expect(headline).toMatch(
      /^\[destination, phase wait\] destination QEMU \(pid \d+\) was killed by SIGKILL at t=\d+ ms; then the source VM is running, its migration status "(active|failed)"/,
    );
  });

  test(`source SIGKILLed while active: the destination fails or exits, and says so ${where(b)}`, {
    tags: ["full"],
  }, async ({ launchPair }) => {
    const pair = await launchPair({
      binary: b.path,
      accel: b.accelRequest,
      memoryMiB: MEMORY_MIB,
    });
    const survives = pair.features("destination").migrateIncomingHasExitOnError;
    pair.expectExit("source", { signal: "SIGKILL" });
    if (!survives) pair.expectExit("destination", { exitCode: 1 });
    await activePair(pair);
    pair.source.signal("SIGKILL");
    await pair.source.exited;
    if (survives) {
      const s = await pair.waitForStatus("destination", "failed", { failOn: [] });
      const final = await pair.finalState("failed");
      expectSideEnded(pair, "destination", final.destination, "failed");
      expect(final.destination.vm.running, "the destination VM never started").toBe(false);
      pair.timeline.record(
        "harness",
        "note",
        `destination: ${JSON.stringify(s.destination.migration)}`,
      );
    } else {
      await pair.destination.exited;
      expect(pair.describeExit("destination")).toMatch(
        /^destination QEMU \(pid \d+\) exited with code 1 at t=\d+ ms: .*load of migration failed/,
      );
    }
    const notes = pair.timeline.entries.filter((e) => e.kind === "note").map((e) => String(e.data));
    expect(
      notes.some((n) => /^source QEMU \(pid \d+\) was killed by SIGKILL at t=\d+ ms$/.test(n)),
    ).toBe(true);
  });
});
