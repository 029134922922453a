// A live Linux guest migrated between two QEMUs of the same version: Debian's kernel (PVH) with
// virtio-net and virtio-blk, running images/linux/workload.c, which dirties its memory at a
// set rate. After the migration the workload on the destination checks every page it wrote, and
// its verdict is read from the destination's serial console. The image is optional (built by
// scripts/build-linux-image into the cache): without it every test skips and says how to build it.
//
// Booting Linux under TCG costs seconds, so by default the suite runs on the newest binary under
// test only; QEMU_MIGTEST_LINUX_ALL=1 runs it on every one.

import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, inject } from "vitest";
import {
  createLinuxDisk,
  LINUX_DISK_SIGNATURE,
  linuxControlArgs,
  linuxGuestArgs,
  locateLinuxImage,
  netdevFor,
  parseWorkloadSerial,
  verifyWorkload,
  WorkloadControl,
  waitForWorkload,
} from "../harness/guest/linux.ts";
import { detectKvm } from "../harness/qemu/accel.ts";
import type { BinaryUnderTest } from "../harness/qemu/binaries-under-test.ts";
import { test, where } from "./migration-test.ts";

const MEMORY_MIB = 256;
const WORKLOAD = { mib: 64, rateMiBps: 16 };
/** Boot under TCG is 2 s to /init plus the first fill; generous for a loaded CI machine. */
const READY_TIMEOUT_MS = 60_000;
/** Boot, migration and two verifications, with room for a loaded machine. */
const TEST_TIMEOUT_MS = 200_000;
const ALL_ENV = "QEMU_MIGTEST_LINUX_ALL";

const binaries = inject("binaries");
const lookup = locateLinuxImage();
const runAll = process.env[ALL_ENV] === "1";

function versionKey(version: string): number[] {
  return version.split(/[.-]/).map((p) => Number.parseInt(p, 10) || 0);
}

function newest(list: readonly BinaryUnderTest[]): BinaryUnderTest | undefined {
  return [...list].sort((a, b) => {
    const [x, y] = [versionKey(a.version), versionKey(b.version)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
      const d = (y[i] ?? 0) - (x[i] ?? 0);
      if (d !== 0) return d;
    }
    return 0;
  })[0];
}

const x86 = binaries.filter((b) => b.arch === "x86_64");
const chosen = runAll ? x86 : x86.filter((b) => b === newest(x86));

function skipReason(b: BinaryUnderTest): string | undefined {
  if (b.arch !== "x86_64") return `the Linux guest image is an x86_64 kernel, not ${b.arch}`;
  if ("reason" in lookup) return lookup.reason;
  if (!chosen.includes(b)) {
    return `the Linux guest runs on the newest binary under test only (${newest(x86)?.label}); ${ALL_ENV}=1 runs it on every one`;
  }
  const kvm = detectKvm();
  if (b.accel === "kvm" && !kvm.hardware) {
    return `accel kvm was requested but ${kvm.reason}; run with QEMU_MIGTEST_ACCEL=tcg or auto`;
  }
  return undefined;
}

describe("Linux guest: live migration keeps the workload's memory", () => {
  for (const b of binaries) {
    describe(where(b), () => {
      test.override({ qemu: b });
      const reason = skipReason(b);
      // The reason goes in the name: reporters list a skipped test's name, not its note.
      const name = `a Linux guest dirtying ${WORKLOAD.mib} MiB at ${WORKLOAD.rateMiBps} MiB/s migrates with virtio-net and virtio-blk, and its memory verifies on the destination ${where(b)}${reason ? ` (skipped: ${reason})` : ""}`;
      test.skipIf(reason)(
        name,
        async ({ scenario, skip, annotate }) => {
          if (!("image" in lookup)) return skip(lookup.reason);
          const { image } = lookup;
          // Short: the command sockets live here and must stay under 108 bytes.
          const dir = mkdtempSync(join(inject("runDir"), "lx-"));
          let control: WorkloadControl | undefined;
          try {
            // One disk for both sides: shared storage, as a migration without block copy expects.
            const disk = join(dir, "disk.raw");
            await createLinuxDisk(disk);
            const netdev = await netdevFor(b.path);
            const t0 = Date.now();
            let ready = { mib: 0, pages: 0 };
            const { pair, result } = await scenario({
              memoryMiB: MEMORY_MIB,
              guestArgs: linuxGuestArgs({ image, workload: WORKLOAD, disk, netdev: netdev.netdev }),
              qemuArgs: {
                source: linuxControlArgs(join(dir, "src.sock")),
                destination: linuxControlArgs(join(dir, "dst.sock")),
              },
              timeoutMs: 90_000,
              hooks: {
                beforeMigrate: async (p) => {
                  p.phase = "guest-start";
                  ready = await waitForWorkload(
                    p.source,
                    "the workload's ready line",
                    (s) => s.ready,
                    READY_TIMEOUT_MS,
                  );
                  // Dirtying is under way: a progress line beyond the initial fill.
                  await waitForWorkload(
                    p.source,
                    "a progress line past the initial fill",
                    (s) => ((s.writes ?? 0) > ready.pages ? s.writes : undefined),
                    READY_TIMEOUT_MS,
                  );
                },
              },
            });
            const bootMs = Date.now() - t0;
            expect(ready.mib, "workload.mib the guest read from its command line").toBe(
              WORKLOAD.mib,
            );
            const { devices } = parseWorkloadSerial(pair.source.serialText());
            expect(devices?.net, "virtio-net in the guest (init's device line)").toBe("eth0");
            expect(devices?.blk, "virtio-blk in the guest reads the disk's signature").toMatch(
              new RegExp(`^vda:${LINUX_DISK_SIGNATURE}`),
            );
            expect(result.destination.vm.status, "destination run state").toBe("running");

            pair.phase = "guest-verify";
            control = await WorkloadControl.connect(join(dir, "dst.sock"));
            const verdict = await verifyWorkload(pair.destination, control);
            expect(verdict.pass, `destination workload verdict: ${verdict.line}`).toBe(true);
            expect(
              Number(verdict.fields.writes),
              "the workload kept writing: its write count on the destination",
            ).toBeGreaterThan(ready.pages);

            // The check can fail: one flipped bit in one page must be found, and only there.
            await control.send("corrupt 5");
            const broken = await verifyWorkload(pair.destination, control);
            expect(broken.pass, `verdict after corrupting page 5: ${broken.line}`).toBe(false);
            expect(broken.fields["first-bad"], broken.line).toBe("5");
            expect(broken.fields["bad-content"], broken.line).toBe("1");

            const ram = result.source.migration.ram;
            await annotate(
              `${b.label} ${b.accel}: boot to workload ready ${bootMs} ms (${image.boot}), migration ${result.durationMs} ms, downtime ${result.source.migration.downtime ?? "?"} ms, ${ram?.["dirty-sync-count"] ?? "?"} dirty syncs, ${((ram?.transferred ?? 0) / 2 ** 20).toFixed(0)} MiB sent, verify ${verdict.fields.ms} ms in the guest; netdev ${netdev.reason}`,
            );
          } finally {
            control?.close();
            rmSync(dir, { recursive: true, force: true });
          }
        },
        TEST_TIMEOUT_MS,
      );
    });
  }
});
