// Which host devices the VFIO suites pass through, one per side. Source and destination run on
// the same host here, and a VFIO group can be open in one QEMU only, so each side needs its own
// device: two VFs of a migration-capable NIC, or two mdevs (mtty makes that free).
// Settings come from the environment (for `npm test`) or from CLI flags (scripts/migrate.ts),
// flags winning over the environment.

import { basename } from "node:path";

/** A PCI function bound to vfio-pci or a vfio-pci variant driver: `-device vfio-pci,host=`. */
export interface VfioPciDevice {
  kind: "pci";
  /** Full address with domain, lower case: "0000:3b:00.1". */
  address: string;
  /** As the user wrote it. */
  given: string;
}

/** A mediated device: `-device vfio-pci,sysfsdev=`. */
export interface VfioMdevDevice {
  kind: "mdev";
  uuid: string;
  /** /sys/bus/mdev/devices/<uuid>, as QEMU's sysfsdev wants it. */
  sysfsPath: string;
  given: string;
}

export type VfioDevice = VfioPciDevice | VfioMdevDevice;

/** QEMU's OnOffAuto for enable-migration (x-enable-migration, before 8.1, is a bool: on/off). */
export type VfioEnableMigration = "on" | "off" | "auto";

export interface VfioConfig {
  source?: VfioDevice;
  destination?: VfioDevice;
  /**
   * What to ask of the device's migration support. "on" (the default) makes QEMU fail at start-up
   * when the device cannot migrate, and migrate mdevs without device dirty tracking (mtty);
   * "auto" turns the same problems into migration blockers.
   */
  enableMigration: VfioEnableMigration;
  /** Open the devices through /dev/iommu (QEMU 9.0+ `iommufd` object) instead of a VFIO group. */
  iommufd: boolean;
}

/** Environment variables read by vfioConfigFromEnv. */
export const VFIO_ENV = {
  source: "QEMU_MIGTEST_VFIO_SOURCE",
  destination: "QEMU_MIGTEST_VFIO_DESTINATION",
  enableMigration: "QEMU_MIGTEST_VFIO_ENABLE_MIGRATION",
  iommufd: "QEMU_MIGTEST_VFIO_IOMMUFD",
} as const;

/** CLI flags, as the CLI's parser hands them over (camel-cased names of --vfio-source etc.). */
export interface VfioFlags {
  vfioSource?: string;
  vfioDestination?: string;
  vfioEnableMigration?: string;
  vfioIommufd?: boolean | string;
}

export class VfioConfigError extends Error {
  override name = "VfioConfigError";
}

const PCI_ADDRESS = /^(?:([0-9a-f]{1,4}):)?([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MDEV_BUS = "/sys/bus/mdev/devices";

/**
 * Parse one device: a PCI address ("0000:3b:00.1", "3b:00.1"), its sysfs path
 * (/sys/bus/pci/devices/0000:3b:00.1), an mdev path (/sys/bus/mdev/devices/<uuid>) or a bare
 * mdev UUID.
 */
export function parseVfioDevice(text: string, what = "VFIO device"): VfioDevice {
  const given = text.trim();
  const pci = PCI_ADDRESS.exec(given.replace(/^\/sys\/bus\/pci\/devices\//, ""));
  if (pci) {
    const [, domain = "0", bus = "", slot = "", fn = ""] = pci;
    const address = `${domain.padStart(4, "0")}:${bus}:${slot}.${fn}`.toLowerCase();
    return { kind: "pci", address, given };
  }
  const last = basename(given);
  if (UUID.test(last) && (given === last || given.startsWith("/sys/"))) {
    const uuid = last.toLowerCase();
    // QEMU accepts any sysfs path of the mdev; the bus path is the one that always exists.
    const sysfsPath = given === last ? `${MDEV_BUS}/${uuid}` : given.replace(/\/+$/, "");
    return { kind: "mdev", uuid, sysfsPath, given };
  }
  throw new VfioConfigError(
    `${what} ${JSON.stringify(given)} is neither a PCI address (0000:3b:00.1) nor an mdev (${MDEV_BUS}/<uuid> or a bare UUID)`,
  );
}

/** A short name for tables and test names: the PCI address or "mdev <uuid>". */
export function describeVfioDevice(d: VfioDevice): string {
  return d.kind === "pci" ? d.address : `mdev ${d.uuid}`;
}

function parseEnableMigration(value: string | undefined, what: string): VfioEnableMigration {
  const v = (value ?? "on").trim().toLowerCase();
  if (v === "on" || v === "off" || v === "auto") return v;
  throw new VfioConfigError(`${what} must be on, off or auto, not ${JSON.stringify(value)}`);
}

function parseSwitch(value: boolean | string | undefined, what: string): boolean {
  if (value === undefined || typeof value === "boolean") return value ?? false;
  const v = value.trim().toLowerCase();
  if (["1", "on", "yes", "true"].includes(v)) return true;
  if (["", "0", "off", "no", "false"].includes(v)) return false;
  throw new VfioConfigError(`${what} must be on or off, not ${JSON.stringify(value)}`);
}

/** Build the configuration from the environment. No device set: an empty (unconfigured) config. */
export function vfioConfigFromEnv(env: NodeJS.ProcessEnv = process.env): VfioConfig {
  return vfioConfigFromArgs({}, env);
}

/**
 * Build the configuration from CLI flags, each falling back to its environment variable.
 * Throws VfioConfigError on a malformed value, on one side given without the other, and on the
 * same device for both sides.
 */
export function vfioConfigFromArgs(
  flags: VfioFlags,
  env: NodeJS.ProcessEnv = process.env,
): VfioConfig {
  const pick = (flag: string | undefined, name: string): [string | undefined, string] =>
    flag !== undefined && flag !== ""
      ? [flag, `--${kebab(name)}`]
      : [env[VFIO_ENV[name as keyof typeof VFIO_ENV]] || undefined, envName(name)];
  const [src, srcWhat] = pick(flags.vfioSource, "source");
  const [dst, dstWhat] = pick(flags.vfioDestination, "destination");
  const [em, emWhat] = pick(flags.vfioEnableMigration, "enableMigration");
  const iommufdFlag = flags.vfioIommufd;
  const config: VfioConfig = {
    enableMigration: parseEnableMigration(em, emWhat),
    iommufd:
      iommufdFlag !== undefined
        ? parseSwitch(iommufdFlag, "--vfio-iommufd")
        : parseSwitch(env[VFIO_ENV.iommufd], VFIO_ENV.iommufd),
  };
  if (src) config.source = parseVfioDevice(src, `${srcWhat} (source VFIO device)`);
  if (dst) config.destination = parseVfioDevice(dst, `${dstWhat} (destination VFIO device)`);
  if (config.source && !config.destination) {
    throw new VfioConfigError(
      `a source VFIO device is set (${srcWhat}=${src}) but no destination: set ${envName("destination")} or --vfio-destination to a second device (both QEMUs run on this host and a device can be opened by one QEMU only; with mtty, create a second mdev)`,
    );
  }
  if (config.destination && !config.source) {
    throw new VfioConfigError(
      `a destination VFIO device is set (${dstWhat}=${dst}) but no source: set ${envName("source")} or --vfio-source`,
    );
  }
  if (config.source && config.destination && sameDevice(config.source, config.destination)) {
    throw new VfioConfigError(
      `source and destination name the same VFIO device (${describeVfioDevice(config.source)}); a device can be opened by one QEMU at a time: give each side its own (two VFs, or two mdevs)`,
    );
  }
  return config;
}

/** Whether both sides have a device. */
export function vfioConfigured(
  c: VfioConfig,
): c is VfioConfig & { source: VfioDevice; destination: VfioDevice } {
  return c.source !== undefined && c.destination !== undefined;
}

function sameDevice(a: VfioDevice, b: VfioDevice): boolean {
  if (a.kind === "pci" && b.kind === "pci") return a.address === b.address;
  if (a.kind === "mdev" && b.kind === "mdev") return a.uuid === b.uuid;
  return false;
}

function envName(name: string): string {
  return VFIO_ENV[name as keyof typeof VFIO_ENV];
}

function kebab(name: string): string {
  return `vfio-${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
