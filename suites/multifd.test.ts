// Multifd precopy (qtest's precopy/*/multifd families): RAM pages go through N channels beside
// the main one. Per binary: the channel count, the multifd-compression methods its enum has, the
// zero-page-detection modes (9.0+), and max-bandwidth honoured by the multifd channels.
//
// QEMU accounts multifd payload in ram.multifd-bytes (multifd_send_fill_packet / the send
// thread's stat64_add(&mig_stats.multifd_bytes, ...)) and the main channel's RAM bytes in
// ram.precopy-bytes (ram_transferred_add); with multifd on, the main channel only carries
// headers, sync flags and (legacy detection) zero pages, so precopy-bytes stays small.

import { expect } from "vitest";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import type { MigrationPair } from "../harness/migration/pair.ts";
import type { Side } from "../harness/migration/timeline.ts";
import type { MigrationInfo, MigrationStats } from "../harness/qmp/qapi.ts";
import type { MigrateSetParameters } from "../harness/scenario/qapi-names.ts";
import type { Scenario } from "../harness/scenario/scenario.ts";
import { MiB } from "../harness/util/units.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 64;
/** The guest dirties [1 MiB, 32 MiB): every page above it is zero for the whole run. */
const RANGE_END_MIB = 32;
const PAGE = 4096;

/** The values of one migrate-set-parameters enum member in this side's own schema. */
function parameterEnum(pair: MigrationPair, side: Side, member: string): string[] {
  const schema = pair.schema(side);
  const type = schema.memberPath(schema.typeOf("migrate-set-parameters", "arg"), [member]);
  return type ? schema.enumValues(type) : [];
}

/** Skip where either side's schema lacks `value` in `member`'s enum. */
const needsEnumValue =
  (member: keyof MigrateSetParameters, value: string) =>
  (pair: MigrationPair): string | undefined => {
    for (const side of ["source", "destination"] as const) {
      const values = parameterEnum(pair, side, member);
      if (!values.includes(value)) {
        const v = pair.machine(side).binary.version;
        return values.length === 0
          ? `QEMU ${v} (${side}) has no migration parameter "${member}" (migrate-set-parameters in its schema)`
          : `QEMU ${v} (${side}) has no ${member} "${value}" (its enum: ${values.join(", ")})`;
      }
    }
    return undefined;
  };

/**
 * Before QEMU 8.1 multifd-bytes was accounted in multifd_send_pages() at queue time (pages times
 * page size plus packet_len), not by the send thread after compression (the 8.1 cycle moved it
 * to multifd_send_thread: packet_len + next_packet_size): a behaviour the schema does not show.
 */
function countsBeforeCompression(pair: MigrationPair): boolean {
  return countsBeforeCompressionVersion(pair.source.binary.version);
}

function countsBeforeCompressionVersion(version: string): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major < 8 || (major === 8 && minor < 1);
}

function multifd(parameters: MigrateSetParameters, rest: Partial<Scenario> = {}): Scenario {
  return {
    memoryMiB: MEMORY_MIB,
    guest: { kind: "bootblock", rangeEndMiB: RANGE_END_MIB },
    transport: { kind: "tcp" },
    capabilities: { both: { multifd: true } },
    parameters: {
      both: parameters,
      // The first pass takes longer than QEMU's first 100 ms rate window. Multifd sends the range
      // in ~50 ms otherwise, and QEMU 11.1 then reports expected-downtime 9223372036854775807
      // (INT64_MAX: no bandwidth measured yet) while it re-syncs: kept out of the figures here.
      source: { "max-bandwidth": 128 * MiB, "downtime-limit": 30_000 },
    },
    ...rest,
  };
}

function finalRam(info: MigrationInfo): MigrationStats {
  const ram = info.ram;
  expect(ram, "source ram statistics after completion").toBeDefined();
  return ram as MigrationStats;
}

/** Most RAM went through the multifd channels, and HMP prints the same multifd byte count. */
function expectRamThroughMultifd(pair: MigrationPair, info: MigrationInfo, text: string): void {
  const ram = finalRam(info);
  const multifdBytes = ram["multifd-bytes"] ?? 0;
  const precopyBytes = ram["precopy-bytes"] ?? 0;
  // At least the dirtied range once, as normal pages (compressed methods: checked on their own).
  expect(multifdBytes, "ram.multifd-bytes").toBeGreaterThan(0);
  expect(
    precopyBytes,
    `ram.precopy-bytes (main channel) against multifd-bytes ${multifdBytes}`,
  ).toBeLessThan(multifdBytes / 4);
  const hmp = parseInfoMigrate(text).ram;
  expect(hmp?.multifdBytes, "HMP multifd bytes").toBeDefined();
  const h = hmp?.multifdBytes;
  if (h) {
    expect(
      h.min <= multifdBytes && multifdBytes <= h.max,
      `HMP multifd "${h.text}" (${h.min}..${h.max}) stands for ${multifdBytes}`,
    ).toBe(true);
  }
  pair.timeline.record(
    "harness",
    "note",
    `multifd-bytes ${multifdBytes}, precopy-bytes ${precopyBytes}, normal ${ram.normal}, duplicate ${ram.duplicate}, transferred ${ram.transferred}`,
  );
}

/** Pages of guest RAM that stay zero for the whole run (above the dirtied range). */
const ZERO_PAGES_AT_LEAST = ((MEMORY_MIB - RANGE_END_MIB - 1) * MiB) / PAGE;

forEachQemu("multifd", (b) => {
  for (const channels of [4, 1, 16]) {
    test(`multifd with ${channels} channel(s) carries the RAM, HMP agrees ${where(b)}`, {
      tags: channels === 4 ? [] : ["full"],
    }, async ({ scenario }) => {
      const { pair, result } = await scenario(multifd({ "multifd-channels": channels }));
      expectCompletedMigration(pair, result, MEMORY_MIB);
      expectRamThroughMultifd(pair, result.source.migration, result.source.infoMigrate);
    });
  }

  for (const method of ["zlib", "zstd"] as const) {
    test(`multifd-compression ${method} completes with fewer bytes than pages ${where(b)}`, {
      tags: ["full"],
    }, async ({ scenario }) => {
      const { pair, result } = await scenario(
        multifd(
          { "multifd-channels": 2, "multifd-compression": method },
          {
            skipIf: needsEnumValue("multifd-compression", method),
            // Compressed, the range is about 420 KiB on the wire: 1 MiB/s keeps the first
            // pass beyond the first rate window. Where the bytes are counted before
            // compression (7.2), the rate limit sees the uncompressed size.
            parameters: {
              both: { "multifd-channels": 2, "multifd-compression": method },
              source: {
                "max-bandwidth": countsBeforeCompressionVersion(b.version) ? 128 * MiB : MiB,
                "downtime-limit": 30_000,
              },
            },
          },
        ),
      );
      expectCompletedMigration(pair, result, MEMORY_MIB);
      const ram = finalRam(result.source.migration);
      const multifdBytes = ram["multifd-bytes"] ?? 0;
      expect(multifdBytes, "multifd-bytes").toBeGreaterThan(0);
      if (countsBeforeCompression(pair)) {
        // 7.x: multifd_send_pages() adds pages->num * page_size + packet_len when it queues
        // the pages, before the send thread compresses them: the uncompressed size exactly.
        expect(multifdBytes, "multifd-bytes counted before compression").toBeGreaterThanOrEqual(
          ram["normal-bytes"],
        );
      } else {
        // The send thread counts what it wrote (packet_len + next_packet_size). The boot
        // block's pages are one counter byte and zeros: they compress to almost nothing.
        expect(
          multifdBytes,
          `multifd-bytes against normal-bytes ${ram["normal-bytes"]} (${method})`,
        ).toBeLessThan(ram["normal-bytes"] / 4);
      }
    });
  }

  test(`multifd-compression none is the default and sends pages whole ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    const { pair, result } = await scenario(
      multifd(
        { "multifd-channels": 2, "multifd-compression": "none" },
        { skipIf: needsEnumValue("multifd-compression", "none") },
      ),
    );
    expectCompletedMigration(pair, result, MEMORY_MIB);
    const ram = finalRam(result.source.migration);
    expect(ram["multifd-bytes"] ?? 0, "multifd-bytes >= normal-bytes").toBeGreaterThanOrEqual(
      ram["normal-bytes"],
    );
  });

  // zero-page-detection (9.0+): "legacy" finds zero pages on the migration thread and sends
  // them on the main channel (save_zero_page), "multifd" in the send threads (multifd_send_
  // zero_page_detect), "none" sends every page whole. Zero pages count in ram.duplicate.
  for (const mode of ["multifd", "legacy", "none"] as const) {
    test(`zero-page-detection ${mode}: zero pages counted as its mode implies ${where(b)}`, {
      tags: ["full"],
    }, async ({ scenario }) => {
      const { pair, result } = await scenario(
        multifd(
          { "multifd-channels": 2, "zero-page-detection": mode },
          { skipIf: needsEnumValue("zero-page-detection", mode) },
        ),
      );
      expectCompletedMigration(pair, result, MEMORY_MIB);
      const ram = finalRam(result.source.migration);
      const hmp = parseInfoMigrate(result.source.infoMigrate).ram;
      expect(hmp?.duplicatePages, "HMP zero/duplicate pages").toBe(ram.duplicate);
      pair.timeline.record(
        "harness",
        "note",
        `zero-page-detection ${mode}: duplicate ${ram.duplicate}, normal ${ram.normal}, multifd-bytes ${ram["multifd-bytes"]}, precopy-bytes ${ram["precopy-bytes"]}`,
      );
      if (mode === "none") {
        expect(ram.duplicate, "no zero page detected").toBe(0);
        // Every page of guest RAM went whole, zero or not.
        expect(ram.normal, "normal pages cover all guest RAM").toBeGreaterThanOrEqual(
          (MEMORY_MIB * MiB) / PAGE,
        );
      } else {
        expect(ram.duplicate, "zero pages above the dirtied range").toBeGreaterThanOrEqual(
          ZERO_PAGES_AT_LEAST,
        );
        expect(ram.normal, "normal pages: about the dirtied range").toBeLessThan(
          (MEMORY_MIB * MiB) / PAGE,
        );
      }
      if (mode === "multifd") {
        // Found by the send threads: the main channel carries no zero page.
        expect(ram["precopy-bytes"] ?? 0, "main channel bytes").toBeLessThan(ZERO_PAGES_AT_LEAST);
      }
    });
  }

  // Measured on this machine, 24 MiB/s limit, first pass: 7.2 sends 24.7 (1 channel) and 24.9
  // (4 channels) MiB/s; 11.1 sends 29.2 and 39.4 MiB/s. Since the 8.1 cycle multifd bytes are
  // accounted by the send threads once written, while migration_rate_exceeded() is asked by the
  // migration thread that queues them: every 100 ms window overshoots by what is in flight
  // (about channels x 512 KiB packets), so the smaller the limit, the larger the relative error.
  // Where the accounting is at send time this test is expected to fail (vitest test.fails), and
  // turns red the day QEMU honours the limit again, so the expectation gets updated.
  const overshoots = !countsBeforeCompressionVersion(b.version);
  (overshoots ? test.fails : test)(
    `multifd honours max-bandwidth: throughput over the first pass within 30% of the limit${overshoots ? " (expected to fail: QEMU overshoots by the bytes in flight)" : ""} ${where(b)}`,
    { tags: ["full"] },
    async ({ scenario }) => {
      // A 48 MiB range the guest barely touches (2 MiB/s) and a 24 MiB/s limit: the first pass
      // takes about two seconds, all of it rate-limited. Held (1 ms downtime limit) until the
      // second sync, so the whole first pass is active.
      const limit = 24 * MiB;
      const { pair } = await scenario(
        multifd(
          { "multifd-channels": 4 },
          {
            guest: { kind: "bootblock", rangeEndMiB: 49, dirtyRateMiBps: 2 },
            // The hold's limits only (no converging source limits over them).
            parameters: { both: { "multifd-channels": 4 } },
            pollIntervalMs: 50,
            hold: { passes: 2, parameters: { "max-bandwidth": limit, "downtime-limit": 1 } },
          },
        ),
      );
      const firstPass = pair.timeline
        .of("source", "query-migrate")
        .filter((s) => s.data.status === "active" && s.data.ram?.["dirty-sync-count"] === 1);
      expect(firstPass.length, "active snapshots in the first pass").toBeGreaterThan(10);
      // From the second to the last but one snapshot of the pass: the edges hold setup and sync.
      const a = firstPass[1] ?? firstPass[0];
      const z = firstPass.at(-2) ?? firstPass.at(-1);
      if (!a || !z) throw new Error("unreachable: snapshots checked above");
      const bytes = (z.data.ram?.transferred ?? 0) - (a.data.ram?.transferred ?? 0);
      const seconds = (z.t - a.t) / 1000;
      const throughput = bytes / seconds;
      pair.timeline.record(
        "harness",
        "note",
        `first pass: ${bytes} bytes in ${seconds.toFixed(3)} s = ${(throughput / MiB).toFixed(2)} MiB/s against a ${limit / MiB} MiB/s limit`,
      );
      expect(seconds, "first pass long enough to measure").toBeGreaterThan(1);
      const what = `throughput ${(throughput / MiB).toFixed(2)} MiB/s over ${seconds.toFixed(2)} s, limit ${limit / MiB} MiB/s`;
      expect(throughput / limit, what).toBeGreaterThan(0.7);
      expect(throughput / limit, what).toBeLessThan(1.3);
    },
  );
});
