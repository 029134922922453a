// The boot-block guest paced in time, on every QEMU under test, under TCG and (where /dev/kvm
// is usable, software kvm_pvm included) KVM: start without a pass, calibration published, the
// progress word, the paced rate, no burst after a stop, the RAM check's liveness, and a rate the
// guest cannot reach. Tolerances are wide (±35%): a shared 2-core host must not make them flaky;
// npm run bench prints the tight figures.

import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { detectKvm, kvmArchMismatch } from "../qemu/accel.ts";
import { hostQemuArch } from "../qemu/arch.ts";
import { probeQemuBinary } from "../qemu/binary.ts";
import { defaultParentDir, Machine } from "../qemu/machine.ts";
import { bootblockArch, parseBootblockSerial } from "./bootblock.ts";
import { MAX_DIRTY_RATE_MIBPS } from "./dirty-rate.ts";
import {
  checkGuestRam,
  DEFAULT_DIRTY_RATE_MIBPS,
  expectDirtyRateReached,
  GuestRateError,
  measureGuestDirtyRate,
  type PreparedGuest,
  prepareGuest,
  readGuestProgress,
  waitForGuestStart,
} from "./guest.ts";

const TOLERANCE = 0.35;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("prepareGuest: the dirty rate", () => {
  const dir = mkdtempSync(join(defaultParentDir(), "prep-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("defaults to DEFAULT_DIRTY_RATE_MIBPS, in the options and in pages/s in the image", async () => {
    const g = await prepareGuest({ kind: "bootblock", pageSpin: 7 }, 128, dir);
    expect(g.options).toMatchObject({ dirtyRateMiBps: DEFAULT_DIRTY_RATE_MIBPS, pageSpin: 7 });
    expect(g.params?.dirtyRatePagesPerSecond).toBe(DEFAULT_DIRTY_RATE_MIBPS * 256);
    expect(g.params?.pageSpin).toBe(7);
    const unpaced = await prepareGuest({ kind: "bootblock", dirtyRateMiBps: 0 }, 128, dir);
    expect(unpaced.params?.dirtyRatePagesPerSecond).toBe(0);
  });

  test("a negative, NaN or infinite rate is a RangeError before any QEMU starts", async () => {
    for (const dirtyRateMiBps of [-8, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(prepareGuest({ kind: "bootblock", dirtyRateMiBps }, 128, dir)).rejects.toThrow(
        RangeError,
      );
    }
  });
});

const binaries = inject("binaries");
const kvm = detectKvm();
/** x86: any TSC of this century; aarch64: CNTFRQ_EL0, 62.5 MHz on QEMU 7.2 and cortex-a57. */
const MIN_CLOCK_HZ = { x86_64: 100e6, aarch64: 1e6 } as const;

/** Beyond x86_64, the smoke set paces the guest on the newest binary of each target only. */
const newestOf = (arch: string) =>
  binaries
    .filter((x) => x.arch === arch)
    .sort((x, y) => y.version.localeCompare(x.version, undefined, { numeric: true }))[0];

for (const b of binaries) {
  const smoke = b.arch === "x86_64" || newestOf(b.arch) === b;
  // The guest's own behaviour (stop/cont, a rate out of reach): the newest of each target in the smoke set.
  const onceTags = { tags: newestOf(b.arch) === b ? [] : ["full"] };
  for (const accel of ["tcg", "kvm"] as const) {
    const label = accel === "kvm" ? `kvm (${kvm.backend ?? "unknown"})` : accel;
    const noKvm =
      accel === "kvm"
        ? (kvmArchMismatch(b.arch, hostQemuArch()) ?? (kvm.usable ? undefined : kvm.reason))
        : undefined;
    describe.skipIf(noKvm)(
      `boot-block guest paced in time [${b.label}, ${b.arch}, ${label}]${noKvm ? ` (skipped: ${noKvm})` : ""}`,
      // The smoke set paces the guest under TCG; every accelerator in the full set.
      { tags: accel === "kvm" || !smoke ? ["full"] : [] },
      () => {
        let dir = "";
        let m: Machine | undefined;
        let guest: PreparedGuest | undefined;
        let unavailable: string | undefined;

        beforeAll(async () => {
          const info = await probeQemuBinary(b.path);
          if (!info.accels.includes(accel)) {
            unavailable = `QEMU ${b.version} lists only ${info.accels.join(", ")}`;
            return;
          }
          dir = mkdtempSync(join(defaultParentDir(), "paced-"));
          guest = await prepareGuest(
            { kind: "bootblock", rangeEndMiB: 100, dirtyRateMiBps: 32 },
            128,
            dir,
            b.arch,
          );
          m = await Machine.launch({
            name: "paced",
            binary: b.path,
            accel,
            memoryMiB: 128,
            guestArgs: guest.args,
            ramBackingFile: true,
            parentDir: dir,
          });
        });
        afterAll(async () => {
          await m?.shutdown();
          if (dir) rmSync(dir, { recursive: true, force: true });
        });

        /** The running machine, or a skip saying why there is none. */
        const machine = (skip: (note?: string) => never): Machine => {
          if (unavailable || !m) return skip(unavailable ?? "no machine");
          return m;
        };

        test("starts without a pass: calibrated TSC and asked rate in the status block", async ({
          skip,
        }) => {
          const vm = machine(skip);
          await waitForGuestStart(vm);
          const progress = await readGuestProgress(vm);
          // At 32 MiB/s a pass over 99 MiB takes 3 s: the start did not wait for one.
          expect(progress.passCounter).toBe(0);
          expect(parseBootblockSerial(vm.serialText()).passes).toBe(0);
          expect(progress.tscHz, `clock Hz (${bootblockArch(b.arch).clock})`).toBeGreaterThan(
            MIN_CLOCK_HZ[b.arch],
          );
          expect(progress.tscHz).toBeLessThan(10e9);
          expect(progress.askedMiBps).toBe(32);
          expect(progress.pagesPerSecond).toBe(32 * 256);
        });

        // One second of host time for both: the guest's clock and its progress word.
        test(`its clock advances at its Hz (±10%) and the progress word at the asked 32 MiB/s (±${TOLERANCE * 100}%) in host time`, async ({
          skip,
        }) => {
          const vm = machine(skip);
          const rate = await measureGuestDirtyRate(vm, 1000);
          const guestSeconds =
            Number(rate.last.progressTsc - rate.first.progressTsc) / rate.last.tscHz;
          const clock = guestSeconds / (rate.sampleMs / 1000);
          expect(
            clock,
            `guest seconds per host second (${bootblockArch(b.arch).clock})`,
          ).toBeGreaterThan(0.9);
          expect(clock).toBeLessThan(1.1);
          expect(rate.askedMiBps).toBe(32);
          expect(rate.accel).toBe(accel);
          expectDirtyRateReached(32, rate, TOLERANCE);
        });

        test(
          "a vCPU stopped for a second does not burst once continued",
          onceTags,
          async ({ skip }) => {
            const vm = machine(skip);
            await vm.qmp.execute("stop");
            const stopped = await readGuestProgress(vm);
            await sleep(1000);
            expect((await readGuestProgress(vm)).pagesWritten, "no page while stopped").toBe(
              stopped.pagesWritten,
            );
            const t0 = performance.now();
            await vm.qmp.execute("cont");
            await sleep(250);
            const after = await readGuestProgress(vm);
            const seconds = (performance.now() - t0) / 1000;
            const pages = after.pagesWritten - stopped.pagesWritten;
            expect(pages, "runs again").toBeGreaterThan(0);
            // On schedule: the time since cont plus at most the 16 ms catch-up. A burst would
            // add the whole stopped second (8192 pages). Under KVM the TSC runs on while stopped,
            // so this is the schedule restart at work (without it: ~10000 pages); under TCG the
            // TSC stops with the VM.
            const bound = after.pagesPerSecond * (seconds + 0.016) * (1 + TOLERANCE);
            expect(pages, `pages written in ${seconds.toFixed(3)} s after cont`).toBeLessThan(
              bound,
            );
          },
        );

        test("checkGuestRam: alive by its progress word, then stopped and every page checked", async ({
          skip,
        }) => {
          const vm = machine(skip);
          if (!guest) return skip("no guest");
          const ram = await checkGuestRam(vm, guest);
          expect(ram.liveness.pagesAfter).toBeGreaterThan(ram.liveness.pagesBefore);
          expect(ram.liveness.movedAfterMs).toBeLessThan(5000);
          expect(ram.liveness.askedMiBps).toBe(32);
          expect(ram.liveness.tscHz).toBeGreaterThan(MIN_CLOCK_HZ[b.arch]);
          expect(ram.check.ok, ram.check.summary).toBe(true);
          expect(ram.check.pagesChecked).toBe(99 * 256);
          expect(ram.check.passCounter).toBe(ram.liveness.passCounterAtStop);
          expect((await vm.queryStatus()).running, "stopped for the check").toBe(false);
        });

        test(
          "a rate the guest cannot reach is reported with the rate it reached (no RAM file: pmemsave)",
          onceTags,
          async ({ skip }) => {
            if (unavailable) return skip(unavailable);
            const g = await prepareGuest(
              { kind: "bootblock", rangeEndMiB: 4, dirtyRateMiBps: MAX_DIRTY_RATE_MIBPS },
              16,
              dir,
              b.arch,
            );
            const fast = await Machine.launch({
              name: "unreach",
              binary: b.path,
              accel,
              memoryMiB: 16,
              guestArgs: g.args,
              parentDir: dir,
            });
            try {
              expect(fast.ramFile).toBeUndefined();
              await waitForGuestStart(fast);
              const rate = await measureGuestDirtyRate(fast, 500);
              expect(rate.mibPerSecond, "dirtying flat out").toBeGreaterThan(100);
              let error: unknown;
              try {
                expectDirtyRateReached(MAX_DIRTY_RATE_MIBPS, rate, TOLERANCE);
              } catch (e) {
                error = e;
              }
              expect(error).toBeInstanceOf(GuestRateError);
              expect((error as Error).message).toMatch(
                new RegExp(
                  `^asked ${MAX_DIRTY_RATE_MIBPS} MiB/s, the guest reached ${Math.round(rate.mibPerSecond)} MiB/s on ${accel}`,
                ),
              );
            } finally {
              await fast.shutdown();
            }
          },
        );
      },
    );
  }
}
