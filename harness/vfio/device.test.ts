// Command lines per QEMU version, from what the real binaries answered (captured fixtures).

import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { parseVfioDevice } from "./config.ts";
import {
  type ObjectPropertyInfo,
  type QmpErrorBody,
  qemuVfioSupportFrom,
  VfioUnsupportedError,
  vfioDeviceArgs,
  vfioMigrationCapabilities,
} from "./device.ts";

interface Captured {
  qemu: string;
  vfioPciProperties: ObjectPropertyInfo[];
  migrateCapabilities: string[];
  missingDeviceError: QmpErrorBody;
}

const captured = (v: string): Captured =>
  JSON.parse(readFileSync(new URL(`../fixtures/vfio/captured-${v}.json`, import.meta.url), "utf8"));
const supportOf = (v: string) => {
  const c = captured(v);
  return qemuVfioSupportFrom(c.qemu, c.vfioPciProperties, c.migrateCapabilities);
};

const PCI = parseVfioDevice("0000:3b:00.1");
const MDEV = parseVfioDevice("/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001");

describe("what each captured QEMU offers", () => {
  test("7.2: x-enable-migration (bool), no switchover-ack, no iommufd", () => {
    const s = supportOf("7.2.22");
    expect(s.migrationSwitch).toEqual({ name: "x-enable-migration", type: "bool" });
    expect(s.migrationProperties).toEqual(["x-enable-migration", "x-pre-copy-dirty-page-tracking"]);
    expect(s.switchoverAck).toBe(false);
    expect(s.iommufd).toBe(false);
  });
  test("10.0: enable-migration (OnOffAuto), migration-events, multifd transfer, iommufd", () => {
    const s = supportOf("10.0.2");
    expect(s.migrationSwitch).toEqual({ name: "enable-migration", type: "OnOffAuto" });
    expect(s.migrationProperties).toEqual([
      "x-pre-copy-dirty-page-tracking",
      "enable-migration",
      "x-device-dirty-page-tracking",
      "migration-events",
      "x-migration-multifd-transfer",
    ]);
    expect(s.switchoverAck && s.returnPath && s.iommufd).toBe(true);
  });
  test("11.1: adds the multifd load-config and queued-buffers-size knobs", () => {
    const s = supportOf("11.1.3");
    expect(s.migrationProperties).toContain("x-migration-load-config-after-iter");
    expect(s.migrationProperties).toContain("x-migration-max-queued-buffers-size");
  });
  test("a binary without vfio-pci says why, in QEMU's words", () => {
    const c = captured("11.1.3");
    const s = qemuVfioSupportFrom("11.1.3", c.missingDeviceError, c.migrateCapabilities);
    expect(s.vfioPci).toBe(false);
    expect(s.missingReason).toBe("DeviceNotFound: Device 'no-such-device' not found");
    expect(() => vfioDeviceArgs(PCI, s)).toThrow(VfioUnsupportedError);
  });
});

describe("vfioDeviceArgs", () => {
  test("7.2, PCI: host= and x-enable-migration=on; auto maps to on, off to off", () => {
    const s = supportOf("7.2.22");
    expect(vfioDeviceArgs(PCI, s)).toEqual([
      "-device",
      "vfio-pci,host=0000:3b:00.1,id=vfio0,x-enable-migration=on",
    ]);
    expect(vfioDeviceArgs(PCI, s, { enableMigration: "auto" })[1]).toMatch(
      /x-enable-migration=on$/,
    );
    expect(vfioDeviceArgs(PCI, s, { enableMigration: "off" })[1]).toMatch(
      /x-enable-migration=off$/,
    );
  });
  test("10.0, mdev: sysfsdev=, enable-migration as asked, migration-events on", () => {
    const s = supportOf("10.0.2");
    expect(vfioDeviceArgs(MDEV, s, { enableMigration: "auto", id: "dev1" })).toEqual([
      "-device",
      "vfio-pci,sysfsdev=/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001,id=dev1,enable-migration=auto,migration-events=on",
    ]);
  });
  test("iommufd: an object and the link, only where vfio-pci has it", () => {
    expect(vfioDeviceArgs(PCI, supportOf("11.1.3"), { iommufd: true })).toEqual([
      "-object",
      "iommufd,id=vfio0-iommufd",
      "-device",
      "vfio-pci,host=0000:3b:00.1,id=vfio0,enable-migration=on,migration-events=on,iommufd=vfio0-iommufd",
    ]);
    expect(() => vfioDeviceArgs(PCI, supportOf("7.2.22"), { iommufd: true })).toThrow(
      /no iommufd property/,
    );
  });
  test("a comma in an mdev path is doubled, as QEMU's option parser wants", () => {
    const odd = parseVfioDevice("/sys/devices/virtual/a,b/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001");
    expect(vfioDeviceArgs(odd, supportOf("10.0.2"))[1]).toMatch(
      /sysfsdev=\/sys\/devices\/virtual\/a,,b\//,
    );
  });
  test("a vfio-pci without any migration switch cannot be used", () => {
    const s = qemuVfioSupportFrom("5.1.0", [{ name: "host", type: "str" }], ["return-path"]);
    expect(() => vfioDeviceArgs(PCI, s)).toThrow(
      /neither enable-migration .* nor x-enable-migration/,
    );
  });
});

describe("vfioMigrationCapabilities", () => {
  test("switchover-ack with return-path where present (8.1+), return-path alone before", () => {
    expect(vfioMigrationCapabilities(supportOf("10.0.2"))).toEqual({
      "return-path": true,
      "switchover-ack": true,
    });
    expect(vfioMigrationCapabilities(supportOf("7.2.22"))).toEqual({ "return-path": true });
  });
});

describe("probeQemuVfioSupport on the installed QEMU", () => {
  test("asks the running binary and agrees with its captured answer", async () => {
    const { probeQemuVfioSupport } = await import("./device.ts");
    const s = await probeQemuVfioSupport("qemu-system-x86_64");
    const c = captured(s.version);
    expect(s).toEqual(qemuVfioSupportFrom(c.qemu, c.vfioPciProperties, c.migrateCapabilities));
  }, 30_000);
});
