// pause-before-switchover and switchover-ack (qtest's precopy/*/switchover-ack and the
// pre-switchover pause libvirt uses). With pause-before-switchover the source stops its VM for
// the switchover, then waits in `pre-switchover` (migration_maybe_pause) before sending the last
// dirty pages and device state, until `migrate-continue state=pre-switchover`. With
// switchover-ack (8.1+, needs return-path) the source may not switch over before the
// destination acks; with no device asking for an ack, the destination sends it as soon as its
// return path is open (savevm.c loadvm_process_command, MIG_CMD_OPEN_RETURN_PATH).

import { expect } from "vitest";
import { compareWithQmp } from "../harness/hmp/compare-qmp.ts";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import type { MigrationPair } from "../harness/migration/pair.ts";
import { declareSwitchoverBandwidth } from "../harness/migration/transport-support.ts";
import type { MigrationCapabilities } from "../harness/scenario/qapi-names.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 48;

/** Held in pre-switchover: both sides inspected on both interfaces, then continued. */
async function inspectAndContinue(pair: MigrationPair): Promise<void> {
  const held = await pair.waitForStatus("source", "pre-switchover");
  const src = held.source;
  const dst = held.destination;
  // The source VM is stopped for the switchover already, the destination still loads.
  const vm = await pair.source.queryStatus();
  expect(vm.running, `source VM in pre-switchover (${vm.status})`).toBe(false);
  expect(vm.status, "source run state").toBe("finish-migrate");
  expect(dst.migration.status, "destination while the source is paused").toBe("active");
  const ram = src.migration.ram;
  expect(ram, "source ram statistics in pre-switchover").toBeDefined();
  expect(ram?.remaining ?? -1, "source ram.remaining in pre-switchover").toBeGreaterThanOrEqual(0);
  // Held still: a second look finds exactly the same figures (nothing is sent while paused).
  const again = await pair.snapshot("source");
  expect(again.migration.status).toBe("pre-switchover");
  expect(again.migration.ram?.transferred, "nothing sent while paused").toBe(ram?.transferred);
  expect(again.migration.ram?.remaining, "nothing left changes while paused").toBe(ram?.remaining);
  if (src.migration.remaining !== undefined) {
    expect(again.migration.remaining, "system-wide remaining while paused").toBe(
      src.migration.remaining,
    );
  }
  for (const [side, snap] of [
    ["source", again],
    ["destination", dst],
  ] as const) {
    const hmp = parseInfoMigrate(snap.infoMigrate);
    expect(hmp.unknownLines, `${side} HMP lines the parser does not know`).toEqual([]);
    expect(hmp.status, `${side} HMP status`).toBe(snap.migration.status);
    // total-time keeps counting while paused: compared as live (presence, not value).
    expect(
      compareWithQmp(hmp, snap.migration, { live: true }),
      `${side} HMP vs QMP in pre-switchover`,
    ).toEqual([]);
  }
  await pair.continueFrom("pre-switchover");
}

forEachQemu("switchover", (b) => {
  for (const [name, capabilities, smoke] of [
    [
      "pause-before-switchover with switchover-ack",
      { "pause-before-switchover": true, "return-path": true, "switchover-ack": true },
      false,
    ],
    // The smoke set's: it runs on every binary (switchover-ack is 8.1+).
    ["pause-before-switchover", { "pause-before-switchover": true }, true],
  ] as [string, MigrationCapabilities, boolean][]) {
    test(`${name}: held in pre-switchover, both sides inspected, migrate-continue completes ${where(b)}`, {
      tags: smoke ? [] : ["full"],
    }, async ({ scenario }) => {
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        capabilities: { both: capabilities },
        // While paused nothing is sent: QEMU 11.1 then measures 0 bandwidth and reports
        // expected-downtime INT64_MAX unless it is told its switchover bandwidth.
        hooks: { beforeMigrate: declareSwitchoverBandwidth, afterStart: inspectAndContinue },
      });
      expectCompletedMigration(pair, result, MEMORY_MIB);
      const events = result.source.events;
      expect(events, "source MIGRATION events").toContain("pre-switchover");
      expect(events.indexOf("pre-switchover"), "pre-switchover before device").toBeLessThan(
        events.indexOf("device"),
      );
    });
  }

  test(`switchover-ack without return-path is refused ${where(b)}`, { tags: ["full"] }, async ({
    launchPair,
    qemu,
    skip,
  }) => {
    const pair = await launchPair({
      binary: qemu.path,
      accel: qemu.accelRequest,
      memoryMiB: MEMORY_MIB,
    });
    const caps = (await pair.queryCapabilities("source")).map((c) => c.capability);
    if (!caps.includes("switchover-ack")) {
      skip(
        `QEMU ${pair.source.binary.version} (source) has no migration capability "switchover-ack" (query-migrate-capabilities)`,
      );
    }
    // options.c migrate_caps_check().
    await expect(
      pair.execute("source", "migrate-set-capabilities", {
        capabilities: [{ capability: "switchover-ack", state: true }],
      }),
    ).rejects.toThrow("Capability 'switchover-ack' requires capability 'return-path'");
  });
});
