// validate-uuid (qtest's precopy/tcp/validate_uuid*): with the capability on, the source sends its
// -uuid in the configuration section (savevm.c vmstate_uuid, needed only when the source's UUID
// is set) and the destination compares it in vmstate_uuid_post_load(): equal completes; different
// fails the load ("UUID received is %s and local is %s", -EINVAL), so the destination exits and
// the source fails with its VM still running; a destination without -uuid only warns ("UUID is
// received %s, but local uuid isn't set") and completes; a source without -uuid sends nothing.

import { expect } from "vitest";
import type { Scenario } from "../harness/scenario/scenario.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 32;
const UUID_A = "11111111-1111-1111-1111-111111111111";
const UUID_B = "22222222-2222-2222-2222-222222222222";

function uuids(source: string | undefined, destination: string | undefined): Scenario {
  return {
    memoryMiB: MEMORY_MIB,
    capabilities: { both: { "validate-uuid": true } },
    qemuArgs: {
      ...(source ? { source: ["-uuid", source] } : {}),
      ...(destination ? { destination: ["-uuid", destination] } : {}),
    },
  };
}

forEachQemu("validate-uuid", (b) => {
  test(`the same -uuid on both sides completes ${where(b)}`, async ({ scenario }) => {
    const { pair, result } = await scenario(uuids(UUID_A, UUID_A));
    expectCompletedMigration(pair, result, MEMORY_MIB);
    expect(pair.destination.stderrTail(), "no UUID complaint").not.toMatch(/UUID/);
  });

  test(`different UUIDs: the destination refuses the stream and exits, the source fails and runs on ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    const { pair, result } = await scenario({
      ...uuids(UUID_A, UUID_B),
      expect: { status: "failed" },
      exits: { destination: { exitCode: 1 } },
    });
    expect(
      result.source.vm.running,
      `source VM after the refusal: ${result.source.vm.status}`,
    ).toBe(true);
    // vmstate_uuid_post_load()'s error_report, then the load fails.
    await pair.destination.exited;
    expect(pair.destination.stderrTail()).toContain(
      `UUID received is ${UUID_A} and local is ${UUID_B}`,
    );
  });

  test(`destination without -uuid warns and completes ${where(b)}`, { tags: ["full"] }, async ({
    scenario,
  }) => {
    const { pair, result } = await scenario(uuids(UUID_A, undefined));
    expectCompletedMigration(pair, result, MEMORY_MIB);
    expect(pair.destination.stderrTail()).toContain(
      `UUID is received ${UUID_A}, but local uuid isn't set`,
    );
  });

  test(`source without -uuid sends none and completes ${where(b)}`, { tags: ["full"] }, async ({
    scenario,
  }) => {
    const { pair, result } = await scenario(uuids(undefined, UUID_B));
    expectCompletedMigration(pair, result, MEMORY_MIB);
    expect(pair.destination.stderrTail(), "nothing to compare").not.toMatch(/UUID/);
  });
});
