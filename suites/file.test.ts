// Migration to storage and back: exec (out through `cat > F`, in through `cat F`) and file:PATH
// (offset, mapped-ram, mapped-ram with multifd, direct-io). The destination loads only once the
// source completed: the save/restore flow, with the guest's RAM verified after the load.

import { closeSync, openSync, readSync, statSync } from "node:fs";
import { expect, onTestFinished } from "vitest";
import type { MigrationPair, MigrationResult } from "../harness/migration/pair.ts";
import {
  declareSwitchoverBandwidth,
  missingTransport,
} from "../harness/migration/transport-support.ts";
import { directIoDir } from "../harness/transport/direct-io.ts";
import { migrationFilePath, type Transport } from "../harness/transport/transport.ts";
import { MiB } from "../harness/util/units.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 64;
const full = { tags: ["full"] };

/** The destination was told to load only after the source completed. */
function expectLoadedAfterSourceCompleted(pair: MigrationPair): void {
  const completedAt = pair.timeline
    .of("source", "event")
    .find((e) => e.data.event === "MIGRATION" && e.data.data?.status === "completed")?.t;
  const incomingAt = pair.timeline
    .of("destination", "command")
    .find((c) => c.data.command === "migrate-incoming")?.t;
  expect(completedAt, "the source's MIGRATION completed event").toBeDefined();
  expect(incomingAt, "migrate-incoming on the destination").toBeDefined();
  expect(
    incomingAt ?? 0,
    "migrate-incoming sent after the source completed",
  ).toBeGreaterThanOrEqual(completedAt ?? Number.POSITIVE_INFINITY);
}

function fileSize(pair: MigrationPair, t: Transport): number {
  return statSync(migrationFilePath(t, pair.destination.dir)).size;
}

forEachQemu("exec and file", (b) => {
  test(`exec: out through cat into a file (source stopped), back in through cat, RAM intact ${where(b)}`, async ({
    scenario,
  }) => {
    const transport: Transport = { kind: "exec" };
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      hooks: { beforeMigrate: declareSwitchoverBandwidth },
      transport,
      live: false,
    });
    expect(result.uri).toMatch(/^exec:cat > \S*migration\.bin && touch /);
    expectCompletedMigration(pair, result, MEMORY_MIB);
    expectLoadedAfterSourceCompleted(pair);
  });

  test(`file: save (source stopped) then restore, RAM intact ${where(b)}`, async ({ scenario }) => {
    const transport: Transport = { kind: "file" };
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      hooks: { beforeMigrate: declareSwitchoverBandwidth },
      transport,
      live: false,
      skipIf: (p) => missingTransport(p, transport),
    });
    expectCompletedMigration(pair, result, MEMORY_MIB);
    expectLoadedAfterSourceCompleted(pair);
    expect(fileSize(pair, transport), "the saved stream").toBeGreaterThan(0);
  });

  test(
    `file with offset=: the stream starts at the offset and loads from there ${where(b)}`,
    full,
    async ({ scenario }) => {
      const offset = 0x100000;
      const transport: Transport = { kind: "file", offset };
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        transport,
        live: false,
        skipIf: (p) => missingTransport(p, transport),
        hooks: {
          beforeMigrate: declareSwitchoverBandwidth,
          afterMigrate: (p) => {
            // Nothing written before the offset: the file starts with a hole of that size.
            const head = readHead(migrationFilePath(transport, p.destination.dir), offset + 4);
            expect(
              head.subarray(0, offset).every((x) => x === 0),
              "bytes before the offset",
            ).toBe(true);
            // QEMU_VM_FILE_MAGIC "QEVM" opens the stream at the offset.
            expect(head.subarray(offset, offset + 4).toString("latin1")).toBe("QEVM");
          },
        },
      });
      expectCompletedMigration(pair, result, MEMORY_MIB);
    },
  );

  test(
    `file with a bad offset is refused with QEMU's QMP error ${where(b)}`,
    full,
    async ({ scenario }) => {
      // qemu_strtosz does not take a hex number with a suffix: "0x20M" (qtest's own bad offset).
      const transport: Transport = { kind: "file", offset: "0x20M" };
      const { result } = await scenario({
        memoryMiB: MEMORY_MIB,
        hooks: { beforeMigrate: declareSwitchoverBandwidth },
        transport,
        skipIf: (p) => missingTransport(p, transport),
        expect: {
          status: "qmp-error",
          command: "migrate",
          class: "GenericError",
          desc: /^file URI has bad offset 0x20M: /,
        },
      });
      expect(result.qmpError?.desc).toMatch(/bad offset 0x20M/);
      expect(result.source.migration.status ?? "none", "nothing started on the source").toBe(
        "none",
      );
      expect(result.source.vm.running, "the source VM still runs").toBe(true);
    },
  );

  for (const live of [false, true]) {
    test(
      `file with mapped-ram${live ? ", live" : ", source stopped"}: one fixed offset per page, file about the guest's RAM ${where(b)}`,
      full,
      async ({ scenario }) => {
        const transport: Transport = { kind: "file" };
        const { pair, result } = await scenario({
          memoryMiB: MEMORY_MIB,
          hooks: { beforeMigrate: declareSwitchoverBandwidth },
          transport,
          live,
          capabilities: { both: { "mapped-ram": true } },
          skipIf: (p) => missingTransport(p, transport),
        });
        expectCompletedMigration(pair, result, MEMORY_MIB);
        expectMappedRamSize(fileSize(pair, transport), result);
      },
    );

    test(
      `file with mapped-ram and multifd${live ? ", live" : ", source stopped"} ${where(b)}`,
      full,
      async ({ scenario }) => {
        const transport: Transport = { kind: "file" };
        const { pair, result } = await scenario({
          memoryMiB: MEMORY_MIB,
          hooks: { beforeMigrate: declareSwitchoverBandwidth },
          transport,
          live,
          capabilities: { both: { "mapped-ram": true, multifd: true } },
          parameters: { both: { "multifd-channels": 4 } },
          skipIf: (p) => missingTransport(p, transport),
        });
        expectCompletedMigration(pair, result, MEMORY_MIB);
        expectMappedRamSize(fileSize(pair, transport), result);
      },
    );
  }

  test(
    `file with mapped-ram, multifd and direct-io on a file system that takes O_DIRECT ${where(b)}`,
    full,
    async ({ scenario, skip }) => {
      const place = directIoDir();
      if ("reason" in place) return skip(place.reason);
      onTestFinished(place.release);
      const transport: Transport = { kind: "file", directory: place.dir };
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        hooks: { beforeMigrate: declareSwitchoverBandwidth },
        transport,
        live: false,
        capabilities: { both: { "mapped-ram": true, multifd: true } },
        parameters: { both: { "multifd-channels": 2, "direct-io": true } },
        skipIf: (p) => missingTransport(p, transport),
      });
      expectCompletedMigration(pair, result, MEMORY_MIB);
      expectMappedRamSize(fileSize(pair, transport), result);
    },
  );
});

/**
 * mapped-ram lays every RAM block out at a fixed offset: the file is the RAM blocks (ram.total:
 * guest RAM, ROMs, and on aarch64 virt its two 64 MiB flash devices) plus headers.
 */
function expectMappedRamSize(size: number, result: MigrationResult): void {
  const total = result.source.migration.ram?.total ?? 0;
  expect(size, "mapped-ram file holds all guest RAM").toBeGreaterThanOrEqual(MEMORY_MIB * MiB);
  expect(size, `mapped-ram file holds every RAM block (ram.total ${total})`).toBeGreaterThanOrEqual(
    total,
  );
  // The bitmaps and the device state add well under 16 MiB.
  expect(size, "mapped-ram file is not a stream of passes").toBeLessThan(total + 16 * MiB);
}

function readHead(path: string, length: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, 0);
    return buf;
  } finally {
    closeSync(fd);
  }
}
