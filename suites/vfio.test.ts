// Migration with a passed-through VFIO device, per binary under test. Needs a host with VFIO and
// two devices (one per side), configured by QEMU_MIGTEST_VFIO_SOURCE / _DESTINATION; the mtty
// sample mdev of Linux >= 6.7 is enough (README "VFIO runner"). Run alone with
// `npx vitest run --tags-filter vfio`. Without a usable host every test is skipped with the
// probe's reason, and the probe's table is attached to the report.

import { describe, expect, inject } from "vitest";
import { MigrationError, type MigrationPair } from "../harness/migration/pair.ts";
import { migrationFeatures } from "../harness/qmp/migration-features.ts";
import type { MigrationInfo } from "../harness/qmp/qapi.ts";
import { QmpSchema } from "../harness/qmp/schema.ts";
import {
  blockerRefusal,
  checkDeviceAfterMigration,
  checkHmpVfio,
  checkPostcopyRefused,
  checkRemainingCountsDevices,
  checkVfioTransferred,
  type PostcopyOutcome,
  refusesVfioPostcopy,
} from "../harness/vfio/assertions.ts";
import { type VfioConfig, vfioConfigFromEnv } from "../harness/vfio/config.ts";
import {
  probeQemuVfioSupport,
  type QemuVfioSupport,
  vfioDeviceArgs,
  vfioMigrationCapabilities,
} from "../harness/vfio/device.ts";
import { formatVfioReport, probeVfioHost, qemuChecks } from "../harness/vfio/probe.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;
const DEVICE_ID = "vfio0";

/** The host part of the probe, once per file; a malformed configuration is a reason too. */
const host = (() => {
  let config: VfioConfig;
  try {
    config = vfioConfigFromEnv();
  } catch (error) {
    return { config: undefined, reason: (error as Error).message, table: "" };
  }
  const report = probeVfioHost(config, { guestRamBytes: MEMORY_MIB << 20 });
  return {
    config,
    reason: report.ready ? undefined : report.reason,
    table: formatVfioReport(report),
  };
})();
// Once per run, in the default reporter's output: why the VFIO tests will skip, or what was found.
console.info(
  `VFIO host probe (the vfio tests run only when the verdict is "ready"):\n${host.table || host.reason}`,
);

describe("vfio", { tags: ["vfio"] }, () => {
  forEachQemu(
    "vfio",
    (b) => {
      let qemu: Promise<QemuVfioSupport> | undefined;
      /** The binary's VFIO support, probed on first use (only when the host is ready). */
      const support = () => {
        qemu ??= probeQemuVfioSupport(b.path, { parentDir: inject("runDir") });
        return qemu;
      };

      /** Skip with the probe's reason (host, then this QEMU), the table attached. */
      async function gate(ctx: {
        skip: (note?: string) => never;
      }): Promise<{ config: VfioConfig; support: QemuVfioSupport }> {
        if (!host.config || host.reason) return ctx.skip(`VFIO host not usable: ${host.reason}`);
        const s = await support();
        const failed = qemuChecks(s).filter((c) => c.status === "fail");
        if (failed.length > 0) {
          return ctx.skip(
            `QEMU ${s.version} cannot migrate VFIO devices: ${failed.map((c) => c.detail).join("; ")}`,
          );
        }
        return { config: host.config, support: s };
      }

      async function launch(
        launchPair: (o: object) => Promise<MigrationPair>,
        config: VfioConfig,
        s: QemuVfioSupport,
        extraCapabilities: Record<string, boolean> = {},
      ): Promise<MigrationPair> {
        const args = (side: "source" | "destination") => {
          const device = config[side];
          if (!device) throw new Error(`no ${side} VFIO device configured`);
          return vfioDeviceArgs(device, s, {
            id: DEVICE_ID,
            enableMigration: config.enableMigration,
            iommufd: config.iommufd,
          });
        };
        const pair = await launchPair({
          binary: b.path,
          accel: b.accelRequest,
          memoryMiB: MEMORY_MIB,
          capabilities: { ...vfioMigrationCapabilities(s), ...extraCapabilities },
          source: { extraArgs: args("source") },
          destination: { extraArgs: args("destination") },
        });
        // A blocker would make `migrate` fail (or, on old QEMU, never start): say so now.
        const before = await pair.snapshot("source");
        const refusal = blockerRefusal("source", before.migration);
        if (refusal) throw await pair.fail(refusal, "source");
        return pair;
      }

      test(`precopy moves the device state, and both interfaces report it ${where(b)}`, async ({
        launchPair,
        skip,
        annotate,
      }) => {
        const { config, support: s } = await gate({ skip });
        const pair = await launch(launchPair, config, s);
        const sourcePci = await pair.source.hmp("info pci");
        const schema = QmpSchema.fromReply(await pair.source.qmp.execute("query-qmp-schema"));
        const result = await pair.migrate({ timeoutMs: 120_000 });
        expect(result.destination.vm.running, "destination VM runs after migration").toBe(true);

        const source: MigrationInfo[] = pair.timeline
          .of("source", "query-migrate")
          .map((e) => e.data);
        const sawPrecopy = source.some(
          (m) => m.status === "active" && (m.vfio?.transferred ?? 0) > 0,
        );
        await annotate(
          `vfio.transferred: final ${result.source.migration.vfio?.transferred} bytes; device data while active: ${sawPrecopy ? "yes" : "no (stop-copy only)"}`,
        );
        expect(
          checkVfioTransferred(source, { expectPrecopyData: false }),
          "vfio.transferred",
        ).toEqual([]);
        expect(
          checkRemainingCountsDevices(source, migrationFeatures(schema).topLevelRemaining),
          "top-level remaining counts the device",
        ).toEqual([]);
        for (const br of pair.timeline.hmpBrackets("source")) {
          const live = !br.stable || br.after.status !== "completed";
          expect(
            checkHmpVfio(br.text, br.after, { live }),
            `source info migrate at t=${br.t} ms:\n${br.text}`,
          ).toEqual([]);
        }
        const destinationPci = await pair.destination.hmp("info pci");
        expect(
          checkDeviceAfterMigration(sourcePci, destinationPci, DEVICE_ID),
          `destination info pci:\n${destinationPci}`,
        ).toEqual([]);
      });

      test(`postcopy with the device is refused as QEMU documents ${where(b)}`, async ({
        launchPair,
        skip,
      }) => {
        const { config, support: s } = await gate({ skip });
        const [major = 0, minor = 0] = s.version.split(".").map(Number);
        if (!refusesVfioPostcopy({ major, minor })) {
          skip(
            `QEMU ${s.version} predates the postcopy refusal for VFIO (8.2); postcopy there can crash the destination, so it is not tried`,
          );
        }
        const pair = await launch(launchPair, config, s, { "postcopy-ram": true });
        const uri = await pair.startIncoming();
        let outcome: PostcopyOutcome;
        try {
          await pair.startMigration(uri);
          const end = await pair.waitForStatuses(
            { source: ["completed", "failed"] },
            { timeoutMs: 60_000 },
          );
          const m = end.source.migration;
          outcome =
            m.status === "completed"
              ? { kind: "completed" }
              : { kind: "failed", message: m["error-desc"] ?? "" };
        } catch (error) {
          if (!(error instanceof MigrationError) || error.phase !== "migrate") throw error;
          outcome = { kind: "refused", message: error.message };
        }
        expect(checkPostcopyRefused(outcome), "postcopy with VFIO").toEqual([]);
        const vm = await pair.source.queryStatus();
        expect(vm.running, `source keeps running after the refusal (${vm.status})`).toBe(true);
      });
    },
    {
      arches: ["x86_64"],
      archReason: "the VFIO runner setup (README: VFIO runner) passes a device to an x86_64 guest",
    },
  );
});
