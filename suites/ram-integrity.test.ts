// "Nothing lost": the RAM check after migration must be able to fail, and convergence must be
// under the harness's control. The guest is the boot-block guest dirtying its range.

import { open } from "node:fs/promises";
import { expect } from "vitest";
import { MiB } from "../harness/util/units.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

forEachQemu(
  "RAM integrity",
  (b) => {
    test(`a page corrupted on the destination is caught with its address and values ${where(b)}`, async ({
      scenario,
    }) => {
      const { pair, result } = await scenario({ memoryMiB: 64, ramCheck: false });
      expect(result.destination.migration.status).toBe("completed");
      // The guest rewrites byte 0 of every page each pass; byte 100 must stay 0: poke it through
      // the destination's shared RAM file (the guest's own memory, from RAM's first byte) while
      // the guest runs.
      const address = pair.destination.ramBase + 0x234_5000 + 100;
      const ramFile = pair.destination.ramFile;
      expect(ramFile, "destination RAM on a shared file").toBeDefined();
      const handle = await open(ramFile as string, "r+");
      try {
        await handle.write(Buffer.from([0xab]), 0, 1, address - pair.destination.ramBase);
      } finally {
        await handle.close();
      }
      const ram = await pair.checkRam();
      expect(ram.check.ok, ram.check.summary).toBe(false);
      expect(ram.check.badPages).toBe(1);
      expect(ram.check.firstBad).toEqual([{ address, expected: 0, actual: 0xab }]);
      expect(ram.check.summary).toMatch(/RAM check FAILED: 1 bad of \d+ pages/);
      expect(ram.check.summary).toContain(`0x${address.toString(16)}`);
    });

    test(`the RAM check also works through pmemsave, without a shared RAM file ${where(b)}`, async ({
      launchPair,
    }) => {
      const pair = await launchPair({
        binary: b.path,
        accel: b.accelRequest,
        memoryMiB: 64,
        destination: { ramBackingFile: false },
      });
      expect(pair.destination.ramFile).toBeUndefined();
      const result = await pair.migrate();
      expect(result.ram?.check.ok, result.ram?.check.summary).toBe(true);
      expect(result.ram?.check.pagesChecked).toBe((48 * MiB - MiB) / 4096);
    });

    test(`precopy stays active under low bandwidth and completes once the limits are raised ${where(b)}`, {
      tags: ["full"],
    }, async ({ scenario }) => {
      const syncs = 4;
      const { pair, result } = await scenario({
        memoryMiB: 64,
        guest: { kind: "bootblock", rangeEndMiB: 32, dirtyRateMiBps: 64 },
        hold: { passes: syncs, parameters: { "max-bandwidth": 32 * MiB, "downtime-limit": 10 } },
        hooks: {
          whileHeld: (p) => {
            // Several dirty-bitmap syncs while still active: the guest outruns the bandwidth.
            const last = (side: "source" | "destination") =>
              p.timeline.last(side, "query-migrate")?.data;
            expect(last("source")?.status, "still active after several passes").toBe("active");
            expect(last("destination")?.status).toBe("active");
            const passes = p.timeline
              .of("source", "event")
              .filter((e) => e.data.event === "MIGRATION_PASS");
            expect(passes.length, "MIGRATION_PASS events on the source").toBeGreaterThanOrEqual(
              syncs - 1,
            );
            expect(last("source")?.ram?.transferred ?? 0).toBeGreaterThan(32 * MiB);
          },
        },
      });
      expect(result.outcome).toBe("completed");
      expect(result.ram?.check.ok, result.ram?.check.summary).toBe(true);
      const released = pair.timeline
        .of("source", "command")
        .filter((c) => c.data.command === "migrate-set-parameters")
        .at(-1);
      expect(released?.data.arguments, "released with converging limits").toMatchObject({
        "downtime-limit": 30_000,
      });
    });
  },
  // One of the four families the second target must pass in the smoke set too.
  { smoke: "all" },
);
