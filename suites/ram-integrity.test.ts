// "Nothing lost": the RAM check after migration must be able to fail, and convergence must be
// under the harness's control. The guest is the boot-block guest dirtying its range.

import { open } from "node:fs/promises";
import { describe, expect, inject } from "vitest";
import {
  CONVERGING_PARAMETERS,
  NON_CONVERGING_PARAMETERS,
} from "../harness/migration/convergence.ts";
import { test, where } from "./migration-test.ts";

const binaries = inject("binaries");
const MiB = 1024 * 1024;

describe.each(binaries)("RAM integrity $label", (b) => {
  test(`a page corrupted on the destination is caught with its address and values ${where(b)}`, async ({
    launchPair,
  }) => {
    const pair = await launchPair({ binary: b.path, accel: b.accelRequest, memoryMiB: 64 });
    const result = await pair.migrate({ ramCheck: false });
    expect(result.destination.migration.status).toBe("completed");
    // The guest rewrites byte 0 of every page each pass; byte 100 must stay 0: poke it through
    // the destination's shared RAM file (the guest's own memory) while the guest runs.
    const address = 0x234_5000 + 100;
    const ramFile = pair.destination.ramFile;
    expect(ramFile, "destination RAM on a shared file").toBeDefined();
    const handle = await open(ramFile as string, "r+");
    try {
      await handle.write(Buffer.from([0xab]), 0, 1, address);
    } finally {
      await handle.close();
    }
    const ram = await pair.checkRam();
    expect(ram.check.ok, ram.check.summary).toBe(false);
    expect(ram.check.badPages).toBe(1);
    expect(ram.check.firstBad).toEqual([{ address, expected: 0, actual: 0xab }]);
    expect(ram.check.summary).toMatch(/RAM check FAILED: 1 bad of \d+ pages/);
    expect(ram.check.summary).toContain("0x2345064");
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

  test(`precopy stays active under low bandwidth and completes once the limits are raised ${where(b)}`, async ({
    launchPair,
  }) => {
    const pair = await launchPair({
      binary: b.path,
      accel: b.accelRequest,
      memoryMiB: 64,
      guest: { kind: "bootblock", rangeEndMiB: 32 },
      source: { parameters: NON_CONVERGING_PARAMETERS },
    });
    await pair.waitForGuest();
    await pair.startMigration(await pair.startIncoming());
    // Several dirty-bitmap syncs while still active: the guest outruns the bandwidth.
    const syncs = 4;
    const stuck = await pair.waitUntil(
      `source dirty-sync-count >= ${syncs}`,
      (s) => (s.source.migration.ram?.["dirty-sync-count"] ?? 0) >= syncs,
      { timeoutMs: 60_000 },
    );
    expect(stuck.source.migration.status, "still active after several passes").toBe("active");
    expect(stuck.destination.migration.status).toBe("active");
    const passes = pair.timeline
      .of("source", "event")
      .filter((e) => e.data.event === "MIGRATION_PASS");
    expect(passes.length, "MIGRATION_PASS events on the source").toBeGreaterThanOrEqual(syncs - 1);
    // Bandwidth really limited: bytes sent so far are far below the guest's dirtying.
    const ram = stuck.source.migration.ram;
    expect(ram?.transferred ?? 0).toBeGreaterThan(32 * MiB);

    await pair.setParameters("source", CONVERGING_PARAMETERS);
    const raisedAt = pair.timeline.now();
    const done = await pair.waitForStatus(
      { source: ["completed"], destination: ["completed"] },
      { timeoutMs: 30_000 },
    );
    expect(done.source.migration.status).toBe("completed");
    pair.timeline.record(
      "harness",
      "note",
      `completed ${pair.timeline.now() - raisedAt} ms after raising the limits`,
    );
    await pair.waitForVm("destination", (s) => s.running, "running");
    const check = await pair.checkRam();
    expect(check.check.ok, check.check.summary).toBe(true);
  });
});
