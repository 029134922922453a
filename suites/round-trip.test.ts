// A -> B -> A: the guest migrated to B, verified there, and migrated back to a fresh QEMU in A's
// place, verified again: a destination is a full source in its turn (no anchor migrates twice).

import { expect } from "vitest";
import { CONVERGING_PARAMETERS } from "../harness/migration/convergence.ts";
import { expectCompletedMigration, expectMigratesToCompletion } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;

forEachQemu("round trip", (b) => {
  test(`A -> B -> A: both hops complete with the guest's memory intact ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    const { pair, result } = await scenario({ memoryMiB: MEMORY_MIB });
    expectCompletedMigration(pair, result, MEMORY_MIB);
    const b = pair.destination.pid;
    await pair.reverse();
    expect(pair.source.pid, "B is the source now").toBe(b);
    // The RAM check stopped the guest on B: it runs again before it goes back.
    await pair.contVm("source");
    await pair.setParameters("source", CONVERGING_PARAMETERS);
    const back = await expectMigratesToCompletion(pair, MEMORY_MIB);
    // The guest went on counting passes through both hops.
    expect(back.ram?.liveness.passCounterAtStop ?? 0).toBeGreaterThanOrEqual(
      result.ram?.liveness.passCounterAtStop ?? 0,
    );
  });
});
