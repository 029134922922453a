// The probe's decisions on fake sysfs trees built in temp dirs (layout as the kernel makes it:
// driver, iommu_group and mdev_type are symlinks whose last component is what matters).

import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import type { VfioCheck } from "./check.ts";
import { type VfioConfig, vfioConfigFromArgs } from "./config.ts";
import { qemuVfioSupportFrom } from "./device.ts";
import { formatVfioReport, probeVfioHost } from "./probe.ts";

const SRC = "0000:3b:00.1";
const DST = "0000:3b:00.2";
const UUID1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
const UUID2 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1002";
const RAM = 128 << 20;

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** A host tree; each helper adds one piece of what the kernel would show. */
function fakeHost() {
  const root = mkdtempSync(join(tmpdir(), "vfio-probe-"));
  roots.push(root);
  const p = (...parts: string[]) => join(root, ...parts);
  const file = (path: string, text = "") => {
    mkdirSync(dirname(p(path)), { recursive: true });
    writeFileSync(p(path), text);
  };
  const link = (path: string, target: string) => {
    mkdirSync(dirname(p(path)), { recursive: true });
    symlinkSync(target, p(path));
  };
  const host = {
    root,
    vfioModule() {
      mkdirSync(p("sys/module/vfio"), { recursive: true });
      file("dev/vfio/vfio");
      return host;
    },
    limits(memlockBytes: string, capEff = "0000000000000000") {
      file(
        "proc/self/limits",
        `Max locked memory         ${memlockBytes}  ${memlockBytes}  bytes\n`,
      );
      file("proc/self/status", `Name:\tnode\nCapEff:\t${capEff}\n`);
      return host;
    },
    pci(address: string, driver: string | undefined, group: string | undefined) {
      mkdirSync(p("sys/bus/pci/devices", address), { recursive: true });
      if (driver)
        link(`sys/bus/pci/devices/${address}/driver`, `../../../bus/pci/drivers/${driver}`);
      if (group !== undefined) {
        link(`sys/bus/pci/devices/${address}/iommu_group`, `../../../kernel/iommu_groups/${group}`);
        mkdirSync(p("sys/kernel/iommu_groups", group, "devices", address), { recursive: true });
        if (driver && /vfio/.test(driver)) file(`dev/vfio/${group}`);
      }
      return host;
    },
    mdev(uuid: string, group: string, driver = "mtty", type = "mtty-2") {
      const dir = `sys/devices/virtual/mtty/mtty/${uuid}`;
      mkdirSync(p(dir), { recursive: true });
      link(`sys/bus/mdev/devices/${uuid}`, p(dir));
      link(`${dir}/driver`, `../../../../../bus/mdev/drivers/${driver}`);
      link(`${dir}/mdev_type`, `../mdev_supported_types/${type}`);
      link(`${dir}/iommu_group`, `../../../../../kernel/iommu_groups/${group}`);
      mkdirSync(p("sys/kernel/iommu_groups", group, "devices", uuid), { recursive: true });
      file(`dev/vfio/${group}`);
      return host;
    },
    kernel(release: string) {
      file("proc/sys/kernel/osrelease", `${release}\n`);
      return host;
    },
  };
  return host;
}

const pciConfig = (): VfioConfig =>
  vfioConfigFromArgs({ vfioSource: SRC, vfioDestination: DST }, {});
const mdevConfig = (): VfioConfig =>
  vfioConfigFromArgs(
    {
      vfioSource: `/sys/bus/mdev/devices/${UUID1}`,
      vfioDestination: `/sys/bus/mdev/devices/${UUID2}`,
    },
    {},
  );

function find(checks: VfioCheck[], scope: string, check: string): VfioCheck {
  const c = checks.find((x) => x.scope === scope && x.check === check);
  if (!c) throw new Error(`no check ${scope}/${check} in ${JSON.stringify(checks)}`);
  return c;
}

describe("probeVfioHost", () => {
  test("a host without VFIO (like this machine): not ready, says so and how to fix it", () => {
    const h = fakeHost();
    const r = probeVfioHost(pciConfig(), { root: h.root, guestRamBytes: RAM });
    expect(r.ready).toBe(false);
    expect(find(r.checks, "host", "kernel VFIO")).toMatchObject({ status: "fail" });
    expect(find(r.checks, "host", "kernel VFIO").fix).toMatch(/modprobe vfio-pci/);
    expect(find(r.checks, "host", "IOMMU")).toMatchObject({ status: "fail" });
    expect(find(r.checks, "source", "exists")).toMatchObject({ status: "fail" });
    expect(r.reason).toMatch(/no VFIO in this kernel/);
  });

  test("nothing configured: the reason names the variables, and the host's state", () => {
    const h = fakeHost();
    const r = probeVfioHost(vfioConfigFromArgs({}, {}), { root: h.root, guestRamBytes: RAM });
    expect(r.ready).toBe(false);
    expect(r.reason).toMatch(/QEMU_MIGTEST_VFIO_SOURCE and QEMU_MIGTEST_VFIO_DESTINATION/);
    expect(r.reason).toMatch(/\/sys\/module\/vfio is missing/);
  });

  test("two variant-driver VFs in their own viable groups, memlock unlimited: ready", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .pci(SRC, "mlx5_vfio_pci", "40")
      .pci(DST, "mlx5_vfio_pci", "41");
    const r = probeVfioHost(pciConfig(), { root: h.root, guestRamBytes: RAM });
    expect(r.checks.filter((c) => c.status !== "ok")).toEqual([]);
    expect(r.ready).toBe(true);
    expect(find(r.checks, "source", "IOMMU group").detail).toBe("group 40");
  });

  test("a device on its host driver: fail with the unbind + driver_override commands", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .pci(SRC, "ixgbe", "40")
      .pci(DST, "vfio-pci", "41");
    const r = probeVfioHost(pciConfig(), { root: h.root, guestRamBytes: RAM });
    const drv = find(r.checks, "source", "driver");
    expect(drv.status).toBe("fail");
    expect(drv.detail).toBe("bound to ixgbe, not vfio-pci");
    expect(drv.fix).toBe(
      `modprobe vfio-pci && echo ${SRC} > /sys/bus/pci/devices/${SRC}/driver/unbind && echo vfio-pci > /sys/bus/pci/devices/${SRC}/driver_override && echo ${SRC} > /sys/bus/pci/drivers_probe`,
    );
    // The group node only exists once the group is all vfio: that is reported too.
    expect(find(r.checks, "source", "group node").status).toBe("fail");
    expect(r.ready).toBe(false);
  });

  test("plain vfio-pci binds but cannot migrate: a warning naming variant drivers", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .pci(SRC, "vfio-pci", "40")
      .pci(DST, "vfio-pci", "41");
    const r = probeVfioHost(pciConfig(), { root: h.root, guestRamBytes: RAM });
    const mig = find(r.checks, "source", "migration driver");
    expect(mig.status).toBe("warn");
    expect(mig.fix).toMatch(/mlx5_vfio_pci/);
    expect(r.ready).toBe(true);
  });

  test("a group shared with a device on a host driver is not viable", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .pci(SRC, "vfio-pci", "40")
      .pci("0000:3b:00.0", "mlx5_core", "40")
      .pci("0000:00:1c.0", "pcieport", "40")
      .pci(DST, "vfio-pci", "41");
    const r = probeVfioHost(pciConfig(), { root: h.root, guestRamBytes: RAM });
    const g = find(r.checks, "source", "group viable");
    expect(g.status).toBe("fail");
    expect(g.detail).toBe("group 40 also holds 0000:3b:00.0 (mlx5_core), bound to host drivers");
    expect(g.fix).toMatch(
      /echo 0000:3b:00.0 > \/sys\/bus\/pci\/devices\/0000:3b:00.0\/driver\/unbind/,
    );
    expect(find(r.checks, "destination", "group viable").status).toBe("ok");
  });

  test("both sides in one group: refused, a group opens in one QEMU only", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .pci(SRC, "vfio-pci", "40")
      .pci(DST, "vfio-pci", "40");
    const r = probeVfioHost(pciConfig(), { root: h.root, guestRamBytes: RAM });
    expect(find(r.checks, "host", "separate groups").status).toBe("fail");
  });

  test("no IOMMU group on a PCI device: fail pointing at the IOMMU", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .pci(SRC, "vfio-pci", undefined)
      .pci(DST, "vfio-pci", "41");
    const r = probeVfioHost(pciConfig(), { root: h.root, guestRamBytes: RAM });
    expect(find(r.checks, "source", "IOMMU group")).toMatchObject({ status: "fail" });
    expect(find(r.checks, "source", "IOMMU group").fix).toMatch(/intel_iommu=on/);
  });

  test("locked memory: 8 MiB fails for PCI with the ulimit command; CAP_IPC_LOCK lifts it", () => {
    const low = fakeHost()
      .vfioModule()
      .limits("8388608")
      .pci(SRC, "vfio-pci", "40")
      .pci(DST, "vfio-pci", "41");
    const r = probeVfioHost(pciConfig(), { root: low.root, guestRamBytes: RAM });
    const m = find(r.checks, "host", "locked memory");
    expect(m.status).toBe("fail");
    expect(m.fix).toMatch(/^ulimit -l 196608 /); // (128 + 64) MiB in KiB
    const cap = fakeHost()
      .vfioModule()
      .limits("8388608", "000001fffeffffff")
      .pci(SRC, "vfio-pci", "40")
      .pci(DST, "vfio-pci", "41");
    const r2 = probeVfioHost(pciConfig(), { root: cap.root, guestRamBytes: RAM });
    expect(find(r2.checks, "host", "locked memory")).toMatchObject({ status: "ok" });
  });

  test("two mtty mdevs on Linux 6.7: ready, and a low memlock is only a warning", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("8388608")
      .kernel("6.7.0-14-generic")
      .mdev(UUID1, "0")
      .mdev(UUID2, "1");
    const r = probeVfioHost(mdevConfig(), { root: h.root, guestRamBytes: RAM });
    expect(r.checks.filter((c) => c.status === "fail")).toEqual([]);
    expect(find(r.checks, "source", "driver").detail).toBe("mdev bound to mtty");
    expect(find(r.checks, "source", "migration driver").status).toBe("ok");
    expect(find(r.checks, "host", "locked memory").status).toBe("warn");
    expect(r.checks.some((c) => c.check === "IOMMU")).toBe(false); // mdevs need no IOMMU
    expect(r.ready).toBe(true);
  });

  test("mtty before Linux 6.7 cannot migrate", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .kernel("6.6.30")
      .mdev(UUID1, "0")
      .mdev(UUID2, "1");
    const r = probeVfioHost(mdevConfig(), { root: h.root, guestRamBytes: RAM });
    expect(find(r.checks, "source", "migration driver")).toMatchObject({
      status: "fail",
      detail: "mtty supports migration from Linux 6.7; this kernel is 6.6.30",
    });
  });

  test("a missing mdev: fail with the create command", () => {
    const h = fakeHost().vfioModule().limits("unlimited").kernel("6.8.0").mdev(UUID1, "0");
    const r = probeVfioHost(mdevConfig(), { root: h.root, guestRamBytes: RAM });
    const e = find(r.checks, "destination", "exists");
    expect(e.status).toBe("fail");
    expect(e.fix).toMatch(new RegExp(`echo ${UUID2} > .*mtty-2/create`));
  });

  test("iommufd asked for: /dev/iommu and the device cdev are checked instead of the group", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .pci(SRC, "vfio-pci", "40")
      .pci(DST, "vfio-pci", "41");
    const config = { ...pciConfig(), iommufd: true };
    const r = probeVfioHost(config, { root: h.root, guestRamBytes: RAM });
    expect(find(r.checks, "host", "iommufd").status).toBe("fail");
    expect(find(r.checks, "source", "device node").status).toBe("fail");
    expect(r.checks.some((c) => c.check === "group node")).toBe(false);
  });

  test("QEMU rows: a binary without vfio-pci fails, 7.2 warns about switchover-ack", () => {
    const h = fakeHost();
    const none = qemuVfioSupportFrom(
      "9.2.0",
      { class: "DeviceNotFound", desc: "Device 'vfio-pci' not found" },
      [],
    );
    const old = qemuVfioSupportFrom(
      "7.2.22",
      [{ name: "x-enable-migration", type: "bool" }],
      ["return-path"],
    );
    const r = probeVfioHost(vfioConfigFromArgs({}, {}), {
      root: h.root,
      guestRamBytes: RAM,
      qemu: [none, old],
    });
    expect(find(r.checks, "qemu 9.2.0", "vfio-pci device")).toMatchObject({ status: "fail" });
    expect(find(r.checks, "qemu 7.2.22", "migration properties")).toMatchObject({
      status: "ok",
      detail: "x-enable-migration",
    });
    expect(find(r.checks, "qemu 7.2.22", "switchover-ack").status).toBe("warn");
  });

  test("the table has one row per check, the fixes below, the verdict last", () => {
    const h = fakeHost()
      .vfioModule()
      .limits("unlimited")
      .pci(SRC, "ixgbe", "40")
      .pci(DST, "vfio-pci", "41");
    const r = probeVfioHost(pciConfig(), { root: h.root, guestRamBytes: RAM });
    const text = formatVfioReport(r);
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^scope\s+device\s+check\s+result\s+detail$/);
    expect(lines.filter((l) => /\b(OK|WARN|FAIL)\b/.test(l))).toHaveLength(r.checks.length);
    expect(text).toMatch(/source\s+0000:3b:00.1\s+driver\s+FAIL\s+bound to ixgbe, not vfio-pci/);
    expect(text).toMatch(/fixes:\n {2}1\. /);
    expect(lines.at(-1)).toBe(`verdict: ${r.reason}`);
  });
});
