// The destination's query-migrate after completion (destination-ram-stats.patch, proposed, not
// merged): a contract on every QEMU. Where the destination's schema makes the source-only
// MigrationStats members optional, the patch's figures must be there and consistent; where it
// does not, today's released behaviour (status only) must hold exactly. No QEMU in Debian has the
// patch: `npm run ab:proof` builds 10.2.2 with it (harness/fixtures/patches/destination-ram-stats-*)
// and this suite runs on such a build through QEMU_MIGTEST_BINARIES like on any QEMU.

import { expect } from "vitest";
import { checkDestinationStats } from "../harness/checks/destination-stats.ts";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;

forEachQemu("destination statistics", (b) => {
  test(`the destination's query-migrate after completion keeps the contract its schema implies ${where(b)}`, async ({
    scenario,
  }) => {
    const { pair, result } = await scenario({ memoryMiB: MEMORY_MIB });
    const patched = pair.features("destination").destinationRamStats;
    expectCompletedMigration(pair, result, MEMORY_MIB);
    const dst = result.destination.migration;
    expect(
      checkDestinationStats(dst, result.source.migration, patched),
      JSON.stringify(dst),
    ).toEqual([]);
    const hmp = parseInfoMigrate(result.destination.infoMigrate);
    if (patched) {
      expect(hmp.ram, "destination HMP RAM figures (patched schema)").toBeDefined();
    } else {
      // Released: HMP shows the status and no RAM block on the destination.
      expect(
        hmp.ram,
        `destination info migrate:\n${result.destination.infoMigrate}`,
      ).toBeUndefined();
      expect(hmp.status).toBe("completed");
    }
  });
});
