// The probe's checks of one configured device, in the order a fix has to happen: it exists, a
// VFIO driver holds it, it has an IOMMU group, the group's (or device's) node can be opened, and
// no other member of the group is on a host driver.

import { existsSync } from "node:fs";
import { join } from "node:path";
import type { CheckStatus, VfioCheck } from "./check.ts";
import { describeVfioDevice, type VfioConfig, type VfioDevice } from "./config.ts";
import { accessible, kernelAtLeast, linkName, listDir, readText } from "./host-files.ts";

type AddCheck = (check: string, status: CheckStatus, detail: string, fix?: string) => void;

/** Drivers a VFIO group may hold besides VFIO drivers and still be viable (they do no DMA). */
const GROUP_SAFE_DRIVERS = ["pci-stub", "pcieport"];

/** vfio-pci itself or a vendor variant of it (mlx5_vfio_pci, hisi_acc_vfio_pci, ...). */
function isVfioPciDriver(driver: string): boolean {
  return driver === "vfio-pci" || /(^|_)vfio_pci$/.test(driver);
}

/** The checks of one side's device, and its IOMMU group when it has one. */
export function deviceChecks(
  root: string,
  side: "source" | "destination",
  device: VfioDevice,
  config: VfioConfig,
): { checks: VfioCheck[]; group?: string } {
  const name = describeVfioDevice(device);
  const checks: VfioCheck[] = [];
  const add: AddCheck = (check, status, detail, fix) =>
    checks.push({ scope: side, device: name, check, status, detail, ...(fix ? { fix } : {}) });

  const sysPath =
    device.kind === "pci"
      ? join(root, "sys/bus/pci/devices", device.address)
      : join(root, device.sysfsPath);
  if (!existsSync(sysPath)) {
    add(
      "exists",
      "fail",
      `${sysPath} does not exist`,
      device.kind === "pci"
        ? "list PCI functions with `lspci -D` and give an address that exists"
        : `create the mdev: echo ${device.uuid} > /sys/class/mdev_bus/<parent>/mdev_supported_types/<type>/create (mtty: /sys/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/create)`,
    );
    return { checks };
  }
  add("exists", "ok", sysPath);

  const driver = linkName(join(sysPath, "driver"));
  if (device.kind === "pci") pciDriverChecks(add, device.address, driver);
  else mdevDriverChecks(add, root, sysPath, driver);

  const group = linkName(join(sysPath, "iommu_group"));
  if (group === undefined) {
    add(
      "IOMMU group",
      "fail",
      "no iommu_group link",
      device.kind === "pci"
        ? "enable the IOMMU (intel_iommu=on iommu=pt or amd_iommu=on) and reboot"
        : "bind the mdev's vendor driver (the group is created when a VFIO driver takes the mdev)",
    );
    return { checks };
  }
  add("IOMMU group", "ok", `group ${group}`);
  if (config.iommufd) deviceNodeCheck(add, root, sysPath);
  else groupNodeChecks(add, root, group);
  groupViabilityCheck(add, root, device, group);
  return { checks, group };
}

function pciDriverChecks(add: AddCheck, a: string, driver: string | undefined): void {
  const bind = `echo vfio-pci > /sys/bus/pci/devices/${a}/driver_override && echo ${a} > /sys/bus/pci/drivers_probe`;
  if (driver === undefined) {
    add("driver", "fail", "bound to no driver", `modprobe vfio-pci && ${bind}`);
  } else if (!isVfioPciDriver(driver)) {
    add(
      "driver",
      "fail",
      `bound to ${driver}, not vfio-pci`,
      `modprobe vfio-pci && echo ${a} > /sys/bus/pci/devices/${a}/driver/unbind && ${bind}`,
    );
  } else {
    add("driver", "ok", `bound to ${driver}`);
    if (driver === "vfio-pci") {
      add(
        "migration driver",
        "warn",
        "plain vfio-pci has no migration support (QEMU then reports the device cannot migrate); migration needs the vendor's variant driver",
        `bind a variant driver instead, e.g. echo mlx5_vfio_pci > /sys/bus/pci/devices/${a}/driver_override (also hisi_acc_vfio_pci, pds_vfio_pci, nvgrace_gpu_vfio_pci, virtio_vfio_pci...)`,
      );
    } else {
      add("migration driver", "ok", `${driver} is a vfio-pci variant driver`);
    }
  }
}

function mdevDriverChecks(
  add: AddCheck,
  root: string,
  sysPath: string,
  driver: string | undefined,
): void {
  if (driver === undefined) {
    add(
      "driver",
      "fail",
      "the mdev is bound to no driver",
      "load its vendor driver (modprobe mtty); on kernels before 5.16 also modprobe vfio_mdev",
    );
    return;
  }
  add("driver", "ok", `mdev bound to ${driver}`);
  const release = readText(join(root, "proc/sys/kernel/osrelease"))?.trim();
  const type = linkName(join(sysPath, "mdev_type"));
  if (type?.startsWith("mtty") || driver === "mtty") {
    const ok = release !== undefined && kernelAtLeast(release, 6, 7);
    add(
      "migration driver",
      ok ? "ok" : "fail",
      ok
        ? `mtty on Linux ${release} supports migration`
        : `mtty supports migration from Linux 6.7; this kernel is ${release ?? "unknown"}`,
      ok ? undefined : "run the VFIO suites on a Linux >= 6.7 runner",
    );
  }
}

/** iommufd: the device's own node under /dev/vfio/devices. */
function deviceNodeCheck(add: AddCheck, root: string, sysPath: string): void {
  const cdev = listDir(join(sysPath, "vfio-dev"))[0];
  const node = cdev ? join(root, "dev/vfio/devices", cdev) : undefined;
  const ok = node !== undefined && accessible(node);
  add(
    "device node",
    ok ? "ok" : "fail",
    ok
      ? `${node} is accessible`
      : `${node ?? `no vfio-dev/ under ${sysPath}`}: missing or not read-write`,
    ok
      ? undefined
      : "kernel needs CONFIG_VFIO_DEVICE_CDEV; as non-root: chown $USER /dev/vfio/devices/vfio*",
  );
}

/** VFIO groups: the group's node and the container. */
function groupNodeChecks(add: AddCheck, root: string, group: string): void {
  const node = join(root, "dev/vfio", group);
  const ok = accessible(node);
  add(
    "group node",
    ok ? "ok" : "fail",
    ok ? `${node} is accessible` : `${node} is missing or not read-write for this user`,
    ok
      ? undefined
      : existsSync(node)
        ? `chown $USER /dev/vfio/${group} or run as root`
        : "it appears once every device of the group is bound to vfio-pci (see the driver check)",
  );
  const container = join(root, "dev/vfio/vfio");
  const cok = accessible(container);
  add(
    "container node",
    cok ? "ok" : "fail",
    cok ? `${container} is accessible` : `${container} is missing or not read-write`,
    cok
      ? undefined
      : "modprobe vfio (it creates /dev/vfio/vfio); as non-root: chmod 0666 /dev/vfio/vfio",
  );
}

/** A group is opened whole: every other PCI member must be on a VFIO or a DMA-free driver. */
function groupViabilityCheck(add: AddCheck, root: string, device: VfioDevice, group: string): void {
  const members = listDir(join(root, "sys/kernel/iommu_groups", group, "devices"));
  const blocking = members.filter((m) => {
    if (device.kind === "mdev" || !/^[0-9a-f]{4}:/.test(m)) return false;
    const d = linkName(join(root, "sys/bus/pci/devices", m, "driver"));
    return d !== undefined && !isVfioPciDriver(d) && !GROUP_SAFE_DRIVERS.includes(d);
  });
  if (blocking.length === 0) {
    add(
      "group viable",
      "ok",
      `group ${group}: ${members.length > 0 ? members.join(", ") : "(no members listed)"}`,
    );
    return;
  }
  const drivers = blocking.map(
    (m) => `${m} (${linkName(join(root, "sys/bus/pci/devices", m, "driver"))})`,
  );
  add(
    "group viable",
    "fail",
    `group ${group} also holds ${drivers.join(", ")}, bound to host drivers`,
    blocking
      .map(
        (m) =>
          `echo ${m} > /sys/bus/pci/devices/${m}/driver/unbind && echo vfio-pci > /sys/bus/pci/devices/${m}/driver_override && echo ${m} > /sys/bus/pci/drivers_probe`,
      )
      .join(" ; "),
  );
}
