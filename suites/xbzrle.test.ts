// XBZRLE precopy (qtest's precopy/unix/xbzrle): the source keeps a cache of pages it sent and,
// from the second pass on (ram.c: rs->xbzrle_started once the bulk stage is over), sends a page
// it finds there as the XOR-RLE delta against its cached copy. The boot block changes one byte
// per page per pass: the ideal delta, a few bytes instead of 4096.
//
// query-migrate reports `xbzrle-cache` (populate_ram_info: whenever the capability is on) and HMP
// prints it as flat lines up to 10.0 and as the `XBZRLE:` block of `info migrate -a` from 10.1;
// the fixture compares every snapshot, this suite also reads `-a` where HMP takes it.

import { expect } from "vitest";
import { compareWithQmp } from "../harness/hmp/compare-qmp.ts";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import type { MigrationPair } from "../harness/migration/pair.ts";
import type { Side } from "../harness/migration/timeline.ts";
import type { MigrationInfo } from "../harness/qmp/qapi.ts";
import { MiB } from "../harness/util/units.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 48;

/** HMP's own help says whether `info migrate` takes `-a` (10.1+). */
async function hmpTakesAll(pair: MigrationPair, side: Side): Promise<boolean> {
  return /^info migrate \[-a\]/m.test(await pair.machine(side).hmp("help info"));
}

/** query-migrate, `info migrate` (with -a where taken), query-migrate: one stable bracket. */
async function xbzrleSnapshot(
  pair: MigrationPair,
): Promise<{ before: MigrationInfo; text: string; after: MigrationInfo }> {
  const m = pair.source;
  const all = await hmpTakesAll(pair, "source");
  const before = await m.qmp.execute<MigrationInfo>("query-migrate");
  const text = await m.hmp(all ? "info migrate -a" : "info migrate");
  const after = await m.qmp.execute<MigrationInfo>("query-migrate");
  pair.timeline.record("source", "note", `info migrate${all ? " -a" : ""}:\n${text}`);
  return { before, text, after };
}

forEachQemu("xbzrle", (b) => {
  for (const cacheMiB of [32, 1]) {
    test(`xbzrle with a ${cacheMiB} MiB cache sends deltas of the pages the guest changes, QMP and HMP agree ${where(b)}`, {
      tags: cacheMiB === 32 ? [] : ["full"],
    }, async ({ scenario }) => {
      const cacheBytes = cacheMiB * MiB;
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        // 31 MiB dirtied at 64 MiB/s, held (half that bandwidth, 1 ms) for three syncs: the
        // first pass sends the range whole, the second fills the cache (xbzrle starts once
        // the bulk stage is over), from the third on pages found in the cache go as deltas.
        guest: { kind: "bootblock", rangeEndMiB: 32, dirtyRateMiBps: 64 },
        capabilities: { both: { xbzrle: true } },
        parameters: { source: { "xbzrle-cache-size": cacheBytes } },
        hold: { passes: 3 },
      });
      expectCompletedMigration(pair, result, MEMORY_MIB);
      // Settled after completion: every figure exactly, on both interfaces.
      const { before, text, after } = await xbzrleSnapshot(pair);
      expect(after, "no change between the reads around info migrate").toEqual(before);
      const x = after["xbzrle-cache"];
      expect(x, "query-migrate xbzrle-cache with the capability on").toBeDefined();
      if (!x) return;
      pair.timeline.record("harness", "note", `xbzrle-cache ${JSON.stringify(x)}`);
      expect(x["cache-size"], "xbzrle-cache.cache-size as set").toBe(cacheBytes);
      expect(x.pages, "xbzrle pages: deltas sent from the third pass on").toBeGreaterThan(0);
      expect(x.bytes, "xbzrle bytes").toBeGreaterThan(0);
      // QEMU's encoding rate (migration_update_rates) is page bytes over encoded bytes for
      // the last rate period (a sync at least 1 s after the previous one), 0 when that period
      // had no xbzrle page; the same ratio over the whole run comes from the counters.
      const ratio = (x.pages * (after.ram?.["page-size"] ?? 4096)) / x.bytes;
      expect(ratio, "page bytes per xbzrle byte over the run").toBeGreaterThan(1);
      if (x["encoding-rate"] !== 0) {
        expect(x["encoding-rate"], "encoding-rate of the last period").toBeGreaterThan(1);
      }
      expect(x["cache-miss-rate"], "cache-miss-rate is a fraction").toBeGreaterThanOrEqual(0);
      expect(x["cache-miss-rate"]).toBeLessThanOrEqual(1);
      if (cacheMiB === 1) {
        // 31 MiB of pages through a 1 MiB cache: most lookups miss.
        expect(x["cache-miss"], "cache misses with a cache smaller than the range").toBeGreaterThan(
          x.pages,
        );
      }
      const hmp = parseInfoMigrate(text);
      expect(hmp.unknownLines, "HMP lines the parser does not know").toEqual([]);
      expect(hmp.xbzrle, "HMP xbzrle lines (flat) or XBZRLE: block (-a)").toBeDefined();
      expect(compareWithQmp(hmp, after, { live: false }), "HMP vs QMP").toEqual([]);
      expect(hmp.xbzrle?.cacheSize, "HMP cache size").toBe(cacheBytes);
      expect(hmp.xbzrle?.pages, "HMP xbzrle pages").toBe(x.pages);
      expect(hmp.xbzrle?.cacheMiss, "HMP cache miss").toBe(x["cache-miss"]);
      expect(hmp.xbzrle?.overflow, "HMP overflow").toBe(x.overflow);
      expect(hmp.xbzrle?.encodingRate, "HMP encoding rate (%0.2f)").toBeCloseTo(
        x["encoding-rate"],
        2,
      );
    });
  }
});
