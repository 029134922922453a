// The vfio-pci device on the QEMU command line, per QEMU version. What a binary offers is read
// from the binary (device-list-properties vfio-pci, query-migrate-capabilities), never assumed
// from its version number:
//  - 5.2 .. 8.0: `x-enable-migration` (bool; default off from 7.1, with the v2 kernel protocol)
//  - 8.1 on:     `enable-migration` (OnOffAuto, default auto), `switchover-ack` capability
//  - 9.0 on:     `iommufd` link; 9.1 on: `migration-events`; 10.0 on: `x-migration-multifd-transfer`

import { Machine } from "../qemu/machine.ts";
import { ExecuteError } from "../qmp/errors.ts";
import type { MigrationCapabilityStatus } from "../qmp/qapi.ts";
import { describeVfioDevice, type VfioConfig, type VfioDevice } from "./config.ts";

/** ObjectPropertyInfo, as device-list-properties returns it. */
export interface ObjectPropertyInfo {
  name: string;
  type: string;
  description?: string;
  "default-value"?: unknown;
}

/** A QMP error reply's body, e.g. {class: "DeviceNotFound", desc: "Device 'vfio-pci' not found"}. */
export interface QmpErrorBody {
  class: string;
  desc: string;
}

/** The migration-related vfio-pci properties the harness knows of, in the order they appeared. */
export const VFIO_MIGRATION_PROPERTIES = [
  "x-enable-migration",
  "x-pre-copy-dirty-page-tracking",
  "enable-migration",
  "x-device-dirty-page-tracking",
  "migration-events",
  "x-migration-multifd-transfer",
  "x-migration-max-queued-buffers",
  "x-migration-max-queued-buffers-size",
  "x-migration-load-config-after-iter",
] as const;

export interface QemuVfioSupport {
  /** "10.0.2" */
  version: string;
  /** The binary has a vfio-pci device type. */
  vfioPci: boolean;
  /** Why not, in QEMU's words, when vfioPci is false. */
  missingReason?: string;
  /** Every vfio-pci property name. */
  properties: string[];
  /** The switch for device migration, when this QEMU has one. */
  migrationSwitch?: { name: "enable-migration" | "x-enable-migration"; type: string };
  /** VFIO_MIGRATION_PROPERTIES present in this binary. */
  migrationProperties: string[];
  /** vfio-pci has an `iommufd` link (9.0+). */
  iommufd: boolean;
  /** Migration capabilities this binary knows. */
  capabilities: string[];
  /** switchover-ack (8.1+): the destination acks the device's initial pre-copy data. */
  switchoverAck: boolean;
  returnPath: boolean;
}

export class VfioUnsupportedError extends Error {
  override name = "VfioUnsupportedError";
}

/** Interpret what a binary answered. `properties` is device-list-properties' reply or error. */
export function qemuVfioSupportFrom(
  version: string,
  properties: readonly ObjectPropertyInfo[] | QmpErrorBody,
  capabilities: readonly string[],
): QemuVfioSupport {
  const caps = [...capabilities];
  const base = {
    version,
    capabilities: caps,
    switchoverAck: caps.includes("switchover-ack"),
    returnPath: caps.includes("return-path"),
  };
  if (!Array.isArray(properties)) {
    const error = properties as QmpErrorBody;
    return {
      ...base,
      vfioPci: false,
      missingReason: `${error.class}: ${error.desc}`,
      properties: [],
      migrationProperties: [],
      iommufd: false,
    };
  }
  const list = properties as readonly ObjectPropertyInfo[];
  const names = list.map((p) => p.name).sort();
  const find = (n: string) => list.find((p) => p.name === n);
  const sw = find("enable-migration") ?? find("x-enable-migration");
  return {
    ...base,
    vfioPci: true,
    properties: names,
    ...(sw
      ? {
          migrationSwitch: {
            name: sw.name as "enable-migration" | "x-enable-migration",
            type: sw.type,
          },
        }
      : {}),
    migrationProperties: VFIO_MIGRATION_PROPERTIES.filter((p) => names.includes(p)),
    iommufd: names.includes("iommufd"),
  };
}

/**
 * Ask a binary about vfio-pci and its migration capabilities: a short-lived `-machine none`
 * QEMU (about a tenth of a second), shut down before returning.
 */
export async function probeQemuVfioSupport(
  binary: string,
  options: { parentDir?: string } = {},
): Promise<QemuVfioSupport> {
  const m = await Machine.launch({
    name: "vfioprobe",
    binary,
    accel: "tcg",
    machineType: "none",
    memoryMiB: 16,
    ...(options.parentDir ? { parentDir: options.parentDir } : {}),
  });
  try {
    let props: ObjectPropertyInfo[] | QmpErrorBody;
    try {
      props = await m.qmp.execute<ObjectPropertyInfo[]>("device-list-properties", {
        typename: "vfio-pci",
      });
    } catch (error) {
      // Only QEMU's own refusal means "no such device"; a dead monitor is a real failure.
      if (!(error instanceof ExecuteError)) throw error;
      props = { class: error.errorClass, desc: error.desc };
    }
    const caps = await m.qmp.execute<MigrationCapabilityStatus[]>("query-migrate-capabilities");
    return qemuVfioSupportFrom(
      m.binary.version,
      props,
      caps.map((c) => c.capability),
    );
  } finally {
    await m.shutdown();
  }
}

/** Why this QEMU cannot migrate a VFIO device, or undefined when it can try. */
export function qemuVfioMigrationGap(s: QemuVfioSupport): string | undefined {
  if (!s.vfioPci) {
    return `QEMU ${s.version} has no vfio-pci device (${s.missingReason}); use a QEMU built with --enable-vfio (Linux hosts)`;
  }
  if (!s.migrationSwitch) {
    return `QEMU ${s.version}'s vfio-pci has neither enable-migration (8.1+) nor x-enable-migration (5.2-8.0): it cannot migrate VFIO devices`;
  }
  return undefined;
}

export interface VfioDeviceArgsOptions {
  /** qdev id of the device; the same on both sides (default "vfio0"). */
  id?: string;
  enableMigration?: VfioConfig["enableMigration"];
  iommufd?: boolean;
}

/** QEMU's option syntax doubles a comma inside a value. */
function optValue(v: string): string {
  return v.replace(/,/g, ",,");
}

/**
 * The arguments that put `device` into a guest on this QEMU: `-device vfio-pci,host=...` or
 * `sysfsdev=...` for an mdev, the version's migration switch, migration-events when the binary
 * has it (the VFIO_MIGRATION events then land in the timeline), and an iommufd object when asked.
 */
export function vfioDeviceArgs(
  device: VfioDevice,
  support: QemuVfioSupport,
  options: VfioDeviceArgsOptions = {},
): string[] {
  const gap = qemuVfioMigrationGap(support);
  if (gap) throw new VfioUnsupportedError(gap);
  const id = options.id ?? "vfio0";
  const props = [
    "vfio-pci",
    device.kind === "pci" ? `host=${device.address}` : `sysfsdev=${optValue(device.sysfsPath)}`,
    `id=${id}`,
  ];
  const em = options.enableMigration ?? "on";
  const sw = support.migrationSwitch;
  if (sw?.name === "enable-migration") props.push(`enable-migration=${em}`);
  // The bool of 5.2-8.0 has no auto; "on" also turns an unsupported device into a blocker there.
  else if (sw?.name === "x-enable-migration") {
    props.push(`x-enable-migration=${em === "off" ? "off" : "on"}`);
  }
  if (support.migrationProperties.includes("migration-events")) props.push("migration-events=on");
  const args: string[] = [];
  if (options.iommufd) {
    if (!support.iommufd) {
      throw new VfioUnsupportedError(
        `iommufd was asked for ${describeVfioDevice(device)} but QEMU ${support.version}'s vfio-pci has no iommufd property (9.0+); unset QEMU_MIGTEST_VFIO_IOMMUFD to use the VFIO group`,
      );
    }
    args.push("-object", `iommufd,id=${id}-iommufd`);
    props.push(`iommufd=${id}-iommufd`);
  }
  args.push("-device", props.join(","));
  return args;
}

/**
 * Capabilities to set on both sides for VFIO: switchover-ack lets the destination load the
 * device's initial pre-copy data before the source stops (it needs return-path to send the ack).
 */
export function vfioMigrationCapabilities(support: QemuVfioSupport): Record<string, boolean> {
  const caps: Record<string, boolean> = {};
  if (support.returnPath) caps["return-path"] = true;
  if (support.switchoverAck && support.returnPath) caps["switchover-ack"] = true;
  return caps;
}
