// Migration between different QEMU versions, both directions, on the newest versioned machine
// type both binaries offer (their own query-machines), as QEMU's QTEST_QEMU_BINARY_SRC/_DST do.
// Pairs: neighbours in the installed matrix, each way; QTEST_QEMU_BINARY_SRC/_DST add one more.

import { describe, expect, inject } from "vitest";
import { commonMachineType } from "../harness/qemu/machine-types.ts";
import { crossVersionFromEnv } from "../harness/qemu/matrix.ts";
import { runScenario } from "../harness/scenario/run.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { test } from "./migration-test.ts";

const binaries = inject("binaries");
const MEMORY_MIB = 128;

interface CrossPair {
  src: { spec: string; label: string };
  dst: { spec: string; label: string };
  accel: string;
  accelRequest: (typeof binaries)[number]["accelRequest"];
}

const pairs: CrossPair[] = [];
const sorted = [...binaries].sort((a, b) =>
  a.version.localeCompare(b.version, undefined, { numeric: true }),
);
for (let i = 1; i < sorted.length; i++) {
  const [older, newer] = [sorted[i - 1], sorted[i]];
  if (!older || !newer) continue;
  const side = (x: typeof older) => ({ spec: x.path, label: x.label });
  pairs.push({
    src: side(older),
    dst: side(newer),
    accel: older.accel,
    accelRequest: older.accelRequest,
  });
  pairs.push({
    src: side(newer),
    dst: side(older),
    accel: older.accel,
    accelRequest: older.accelRequest,
  });
}
const fromEnv = crossVersionFromEnv();
if (fromEnv && binaries[0]) {
  pairs.push({
    src: { spec: fromEnv.src, label: `QTEST_QEMU_BINARY_SRC=${fromEnv.src}` },
    dst: { spec: fromEnv.dst, label: `QTEST_QEMU_BINARY_DST=${fromEnv.dst}` },
    accel: binaries[0].accel,
    accelRequest: binaries[0].accelRequest,
  });
}

describe("cross-version migration", () => {
  if (pairs.length === 0) {
    test.skip(
      `needs two QEMU versions (found ${binaries.map((b) => b.label).join(", ") || "none"}): run scripts/install-qemu-matrix, or set QTEST_QEMU_BINARY_SRC/_DST`,
    );
  }
  for (const p of pairs) {
    test(`precopy from ${p.src.label} to ${p.dst.label} completes and both sides agree [${p.src.label} -> ${p.dst.label}, ${p.accel}]`, async ({
      launchPair,
    }) => {
      const where = { binary: p.src.spec, accel: p.accelRequest, parentDir: inject("runDir") };
      const machineType = await commonMachineType(
        [p.src.spec, p.dst.spec],
        "pc-i440fx",
        inject("runDir"),
      );
      const { pair, result } = await runScenario(
        {
          machineType,
          memoryMiB: MEMORY_MIB,
          binaries: { source: p.src.spec, destination: p.dst.spec },
        },
        where,
        launchPair,
      );
      expect(pair.source.commandLine).toContain(machineType);
      expect(pair.source.binary.path).not.toBe(pair.destination.binary.path);
      expectCompletedMigration(pair, result, MEMORY_MIB);
    });
  }
});
