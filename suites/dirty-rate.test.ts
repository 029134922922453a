// QEMU's dirty-rate estimate (calc-dirty-rate / query-dirty-rate, HMP info dirty_rate) against
// the boot-block guest's known rate, and dirty-limit (8.1+), which needs KVM's dirty ring.
//
// The guest dirties 32 MiB/s paced in time over a 144 MiB range: a pass takes 4.5 s, longer
// than the measuring window, so every page dirtied in the window is a distinct page and the true
// rate is the paced one. dirtyrate.c: dirty-bitmap counts the pages the dirty log saw
// (do_calculate_dirtyrate: MiB of dirty pages * 1000 / window ms); page-sampling hashes
// sample-pages per GiB of every RAM block twice and scales the changed fraction to the blocks'
// MiB (update_dirtyrate), so its error is the binomial spread of the samples. Both are integer
// MiB/s, rounded down.
//
// The truth is the guest's own pages-written word over the span of the measurement. Measured on
// this machine, 1 s windows, 16384 samples per GiB (QEMU / guest, MiB/s): 7.2 27/26.9, 32/32.0,
// 33/32.0, 31/32.1; 10.0 31/31.6, 28/29.4, 35/32.0, 32/32.0; 11.1 30/32.0, 31/32.0, 32/32.0,
// 32/31.9: within 10%. Tolerance: page-sampling +-25% (about six standard deviations of 2560 samples at a 20% changed
// fraction, plus the floor), dirty-bitmap +-15% (the guest's own pacing tolerance).

import { expect } from "vitest";
import { readGuestProgress } from "../harness/guest/guest.ts";
import type { MigrationPair } from "../harness/migration/pair.ts";
import { ExecuteError } from "../harness/qmp/errors.ts";
import { timeoutMs } from "../harness/util/timeouts.ts";
import { MiB } from "../harness/util/units.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 160;
const RATE_MIBPS = 32;

interface DirtyRateInfo {
  status: string;
  "dirty-rate"?: number;
  "calc-time": number;
  "sample-pages": number;
  mode?: string;
}

/** The HMP `info dirty_rate` figure, "Dirty rate: N (MB/s)". */
function hmpDirtyRate(text: string): number | undefined {
  const m = /^Dirty rate: (\d+) \(MB\/s\)\r?$/m.exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/**
 * calc-dirty-rate over one second on the source, then query-dirty-rate until measured; the
 * guest's own pages-written word read before and after gives the true rate over the same span.
 */
async function measure(
  pair: MigrationPair,
  mode: "page-sampling" | "dirty-bitmap",
): Promise<{ info: DirtyRateInfo; hmp: string; trueMiBps: number }> {
  const before = { t: performance.now(), p: await readGuestProgress(pair.source) };
  await pair.execute("source", "calc-dirty-rate", {
    "calc-time": 1,
    mode,
    ...(mode === "page-sampling" ? { "sample-pages": 16384 } : {}),
  });
  const deadline = Date.now() + timeoutMs(10_000);
  for (;;) {
    const info = await pair.execute<DirtyRateInfo>("source", "query-dirty-rate");
    if (info.status === "measured") {
      const after = { t: performance.now(), p: await readGuestProgress(pair.source) };
      const pages = after.p.pagesWritten - before.p.pagesWritten;
      const trueMiBps = (pages * 4096) / MiB / ((after.t - before.t) / 1000);
      return { info, hmp: await pair.source.hmp("info dirty_rate"), trueMiBps };
    }
    if (Date.now() > deadline) throw new Error(`query-dirty-rate still ${JSON.stringify(info)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

forEachQemu("dirty rate", (b) => {
  for (const [mode, tolerance] of [
    ["page-sampling", 0.25],
    ["dirty-bitmap", 0.15],
  ] as const) {
    // dirty-bitmap counts total_dirty_pages, which only physical_memory_set_dirty_lebitmap()
    // (system/physmem.c: the KVM dirty log imported into the bitmaps) increments: under TCG
    // QEMU 10.0 and 11.1 report 0 MiB/s, and 7.2 dies of SIGSEGV on the command. Expected to
    // fail there (vitest test.fails), so it turns red the day TCG counts.
    const broken = mode === "dirty-bitmap" && b.accel === "tcg";
    (broken ? test.fails : test)(
      `calc-dirty-rate ${mode} estimates the guest's dirty rate (paced at ${RATE_MIBPS} MiB/s) within ${tolerance * 100}%, QMP and HMP agree${broken ? " (expected to fail under TCG: QEMU counts dirty-bitmap pages from the KVM dirty log only)" : ""} ${where(b)}`,
      {
        tags: mode === "page-sampling" ? [] : ["full"],
      },
      async ({ scenario }) => {
        let measured: Awaited<ReturnType<typeof measure>> | undefined;
        const { pair, result } = await scenario({
          memoryMiB: MEMORY_MIB,
          guest: { kind: "bootblock", rangeEndMiB: 145, dirtyRateMiBps: RATE_MIBPS },
          hooks: {
            beforeMigrate: async (p) => {
              measured = await measure(p, mode);
            },
          },
        });
        expectCompletedMigration(pair, result, MEMORY_MIB);
        const info = measured?.info;
        expect(info?.mode ?? mode, "mode as asked").toBe(mode);
        expect(info?.["calc-time"], "calc-time (s)").toBe(1);
        const rate = info?.["dirty-rate"];
        expect(rate, "dirty-rate measured").toBeTypeOf("number");
        // Against what the guest really wrote over the span (a loaded host can slow the paced
        // guest below its rate), +1 MiB/s for QEMU's rounding down.
        const truth = measured?.trueMiBps ?? 0;
        pair.timeline.record(
          "harness",
          "note",
          `${mode}: QEMU ${rate} MiB/s, guest ${truth.toFixed(1)} MiB/s`,
        );
        expect(truth, "the guest dirtied pages during the window").toBeGreaterThan(RATE_MIBPS / 4);
        expect(
          Math.abs((rate ?? 0) - truth),
          `QEMU's ${mode} estimate ${rate} MiB/s against the guest's ${truth.toFixed(1)} MiB/s (asked ${RATE_MIBPS})`,
        ).toBeLessThanOrEqual(tolerance * truth + 1);
        expect(hmpDirtyRate(measured?.hmp ?? ""), `HMP info dirty_rate:\n${measured?.hmp}`).toBe(
          rate,
        );
      },
    );
  }

  // dirty-limit throttles each vCPU through KVM's dirty ring (options.c migrate_caps_check:
  // "dirty-limit requires KVM with accelerator property 'dirty-ring-size' set"). Detected by
  // asking QEMU, never assumed from the accelerator: a refusal skips with QEMU's own words.
  test(`dirty-limit throttles through the dirty ring, dirty-limit-throttle-time-per-round reported ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario, skip }) => {
    await scenario({
      memoryMiB: 64,
      parameters: { source: { "vcpu-dirty-limit": 1 } },
      hold: { passes: 3 },
      hooks: {
        beforeMigrate: async (p) => {
          try {
            await p.setCapabilities("source", { "dirty-limit": true });
          } catch (error) {
            if (!(error instanceof ExecuteError)) throw error;
            skip(
              `QEMU ${p.source.binary.version} (source, accel ${p.source.accel.accel}) refuses dirty-limit: "${error.desc}"`,
            );
          }
        },
        whileHeld: (p) => {
          // Once throttling, fill_source_migration_info reports the throttle time per round.
          const active = p.timeline
            .of("source", "query-migrate")
            .filter((s) => s.data["dirty-limit-throttle-time-per-round"] !== undefined);
          expect(
            active.length,
            "snapshots with dirty-limit-throttle-time-per-round",
          ).toBeGreaterThan(0);
        },
      },
      skipIf: (p) =>
        p.features("source").capabilities.includes("dirty-limit")
          ? undefined
          : `QEMU ${p.source.binary.version} (source) has no migration capability "dirty-limit" (query-migrate-capabilities)`,
    });
  });
});
