// Precopy between two real QEMUs, over tcp and a unix socket, on every binary under test.
// Both sides, both interfaces: QMP query-migrate and HMP info migrate are read on source and
// destination, checked on their own and against each other.

import { describe, expect, inject } from "vitest";
import { compareWithQmp } from "../harness/hmp/compare-qmp.ts";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import { freeLoopbackPort } from "../harness/migration/pair.ts";
import { expectCompletedMigration, expectLegalEvents } from "./expect-migration.ts";
import { test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;
const binaries = inject("binaries");

describe.each(binaries)("precopy $label", (b) => {
  for (const transport of ["tcp", "unix"] as const) {
    test(`precopy over ${transport} completes and both sides agree ${where(b)}`, async ({
      launchPair,
    }) => {
      const pair = await launchPair({
        binary: b.path,
        accel: b.accelRequest,
        memoryMiB: MEMORY_MIB,
        transport,
      });
      const result = await pair.migrate({ timeoutMs: 60_000 });
      expect(result.uri.startsWith(`${transport}:`)).toBe(true);
      expectCompletedMigration(pair, result, MEMORY_MIB);
      expect(
        result.ram?.liveness.counterAfter,
        "guest pass counter moved on the destination",
      ).not.toBe(result.ram?.liveness.counterBefore);
    });
  }

  test(`migration to a port nobody listens on fails and the source keeps running ${where(b)}`, async ({
    launchPair,
  }) => {
    const pair = await launchPair({ binary: b.path, accel: b.accelRequest, memoryMiB: MEMORY_MIB });
    const port = await freeLoopbackPort();
    const result = await pair.migrateExpectingFailure(`tcp:127.0.0.1:${port}`);
    const src = result.source;
    expect(src.migration.status, "source status").toBe("failed");
    expect(
      src.vm.running,
      `source VM must still run after a failed migration (query-status: ${src.vm.status})`,
    ).toBe(true);
    expectLegalEvents(pair, "source", "failed", src.events);
    const hmp = parseInfoMigrate(src.infoMigrate);
    expect(hmp.status, "source HMP status").toBe("failed");
    expect(compareWithQmp(hmp, src.migration, { live: false }), "source HMP vs QMP").toEqual([]);
    // error-desc on a failed source: present from 2.7 on.
    expect(src.migration["error-desc"], "source error-desc").toMatch(/refused|connect/i);
    // The destination was never contacted: it has not even been told to listen.
    expect(result.destination.migration.status ?? "none", "destination untouched").toBe("none");
  });
});
