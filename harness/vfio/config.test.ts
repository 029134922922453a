import { describe, expect, test } from "vitest";
import {
  parseVfioDevice,
  VfioConfigError,
  vfioConfigFromArgs,
  vfioConfigFromEnv,
  vfioConfigured,
} from "./config.ts";

const UUID = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";

describe("parseVfioDevice", () => {
  test("PCI addresses are normalised to domain:bus:slot.function, lower case", () => {
    expect(parseVfioDevice("0000:3b:00.1")).toMatchObject({ kind: "pci", address: "0000:3b:00.1" });
    expect(parseVfioDevice("3B:00.1")).toMatchObject({ kind: "pci", address: "0000:3b:00.1" });
    expect(parseVfioDevice("/sys/bus/pci/devices/0001:af:1f.7")).toMatchObject({
      address: "0001:af:1f.7",
    });
  });
  test("mdevs by path or bare UUID give QEMU's sysfsdev path", () => {
    expect(parseVfioDevice(`/sys/bus/mdev/devices/${UUID}`)).toEqual({
      kind: "mdev",
      uuid: UUID,
      sysfsPath: `/sys/bus/mdev/devices/${UUID}`,
      given: `/sys/bus/mdev/devices/${UUID}`,
    });
    expect(parseVfioDevice(UUID.toUpperCase())).toMatchObject({
      uuid: UUID,
      sysfsPath: `/sys/bus/mdev/devices/${UUID}`,
    });
  });
  test.each(["", "3b:00", "0000:3b:20.1", "0000:3b:00.8", "eth0", `/tmp/${UUID}`])(
    "rejects %j",
    (text) => {
      expect(() => parseVfioDevice(text)).toThrow(VfioConfigError);
    },
  );
});

describe("vfioConfigFromArgs", () => {
  test("nothing set: unconfigured, enable-migration on, group backend", () => {
    const c = vfioConfigFromEnv({});
    expect(vfioConfigured(c)).toBe(false);
    expect(c).toEqual({ enableMigration: "on", iommufd: false });
  });
  test("environment gives both sides", () => {
    const c = vfioConfigFromEnv({
      QEMU_MIGTEST_VFIO_SOURCE: "0000:3b:00.1",
      QEMU_MIGTEST_VFIO_DESTINATION: `/sys/bus/mdev/devices/${UUID}`,
      QEMU_MIGTEST_VFIO_ENABLE_MIGRATION: "auto",
      QEMU_MIGTEST_VFIO_IOMMUFD: "1",
    });
    expect(vfioConfigured(c)).toBe(true);
    expect(c.source).toMatchObject({ kind: "pci", address: "0000:3b:00.1" });
    expect(c.destination).toMatchObject({ kind: "mdev", uuid: UUID });
    expect(c.enableMigration).toBe("auto");
    expect(c.iommufd).toBe(true);
  });
  test("flags win over the environment", () => {
    const c = vfioConfigFromArgs(
      { vfioSource: "3b:00.2", vfioDestination: "3b:00.3", vfioIommufd: false },
      {
        QEMU_MIGTEST_VFIO_SOURCE: "0000:3b:00.1",
        QEMU_MIGTEST_VFIO_DESTINATION: "0000:3b:00.4",
        QEMU_MIGTEST_VFIO_IOMMUFD: "1",
      },
    );
    expect(c.source).toMatchObject({ address: "0000:3b:00.2" });
    expect(c.destination).toMatchObject({ address: "0000:3b:00.3" });
    expect(c.iommufd).toBe(false);
  });
  test("one side alone is an error that names the missing variable", () => {
    expect(() => vfioConfigFromArgs({ vfioSource: "3b:00.2" }, {})).toThrow(
      /no destination: set QEMU_MIGTEST_VFIO_DESTINATION/,
    );
    expect(() => vfioConfigFromEnv({ QEMU_MIGTEST_VFIO_DESTINATION: UUID })).toThrow(/no source/);
  });
  test("the same device on both sides is refused", () => {
    expect(() =>
      vfioConfigFromArgs({ vfioSource: "3b:00.1", vfioDestination: "0000:3b:00.1" }, {}),
    ).toThrow(/same VFIO device/);
  });
  test("bad values name where they came from", () => {
    expect(() => vfioConfigFromArgs({ vfioEnableMigration: "maybe" }, {})).toThrow(
      /--vfio-enable-migration must be on, off or auto/,
    );
    expect(() => vfioConfigFromEnv({ QEMU_MIGTEST_VFIO_SOURCE: "nic0" })).toThrow(
      /QEMU_MIGTEST_VFIO_SOURCE \(source VFIO device\) "nic0"/,
    );
  });
});
