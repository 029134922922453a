// Can this host pass the configured devices through and migrate them? One table of checks per
// device and per QEMU binary, each failure with the exact command that fixes it. Everything is
// read below `root` (sysfs, /dev, /proc/self), so unit tests run the probe on fake trees.

import {
  accessSync,
  constants,
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
} from "node:fs";
import { basename, join } from "node:path";
import {
  describeVfioDevice,
  VFIO_ENV,
  type VfioConfig,
  type VfioDevice,
  vfioConfigured,
} from "./config.ts";
import { type QemuVfioSupport, qemuVfioMigrationGap } from "./device.ts";

export type CheckStatus = "ok" | "warn" | "fail";

export interface VfioCheck {
  /** "host", "source", "destination", or "qemu 10.0.2". */
  scope: string;
  /** The device the check is about, when it is about one. */
  device?: string;
  check: string;
  status: CheckStatus;
  detail: string;
  /** Shell commands (or a setting) that fix a failed check. */
  fix?: string;
}

export interface VfioProbeReport {
  checks: VfioCheck[];
  /** Both sides configured and no check failed: the suites can run. */
  ready: boolean;
  /** One paragraph saying why not (or "ready"), for a skip message. */
  reason: string;
}

export interface VfioProbeOptions {
  /** Where sysfs, /dev and /proc are found (tests pass a fake tree). Default "/". */
  root?: string;
  /** Guest RAM of each QEMU: with PCI passthrough it is all pinned, against RLIMIT_MEMLOCK. */
  guestRamBytes: number;
  /** QEMU binaries' VFIO support, probed beforehand (probeQemuVfioSupport). */
  qemu?: readonly QemuVfioSupport[];
}

/** Drivers a VFIO group may hold besides VFIO drivers and still be viable (they do no DMA). */
const GROUP_SAFE_DRIVERS = ["pci-stub", "pcieport"];

/** vfio-pci itself or a vendor variant of it (mlx5_vfio_pci, hisi_acc_vfio_pci, ...). */
function isVfioPciDriver(driver: string): boolean {
  return driver === "vfio-pci" || /(^|_)vfio_pci$/.test(driver);
}

/** QEMU's own headroom over guest RAM that gets pinned too (ROMs, video RAM...). */
const MEMLOCK_MARGIN = 64 << 20;
const CAP_IPC_LOCK = 14n;

export function probeVfioHost(config: VfioConfig, options: VfioProbeOptions): VfioProbeReport {
  const root = options.root ?? "/";
  const checks: VfioCheck[] = [...kernelChecks(root, config)];
  const groups: Partial<Record<"source" | "destination", string>> = {};
  for (const side of ["source", "destination"] as const) {
    const device = config[side];
    if (!device) continue;
    const r = deviceChecks(root, side, device, config);
    checks.push(...r.checks);
    if (r.group !== undefined) groups[side] = r.group;
  }
  if (groups.source !== undefined && groups.source === groups.destination) {
    checks.push({
      scope: "host",
      check: "separate groups",
      status: "fail",
      detail: `source and destination are both in IOMMU group ${groups.source}; a group is opened by one QEMU at a time`,
      fix: "give the destination a device from another IOMMU group (another VF, or a second mdev)",
    });
  }
  if (vfioConfigured(config)) checks.push(...memlockChecks(root, config, options.guestRamBytes));
  for (const q of options.qemu ?? []) checks.push(...qemuChecks(q));
  return { checks, ...verdict(config, checks) };
}

function verdict(config: VfioConfig, checks: VfioCheck[]): Omit<VfioProbeReport, "checks"> {
  const failed = checks.filter((c) => c.status === "fail");
  const what = failed.map(
    (c) => `${c.scope}${c.device ? ` ${c.device}` : ""}: ${c.check}: ${c.detail}`,
  );
  if (!vfioConfigured(config)) {
    const host = what.length > 0 ? `; besides, on this host: ${what.join("; ")}` : "";
    return {
      ready: false,
      reason: `no VFIO devices configured: set ${VFIO_ENV.source} and ${VFIO_ENV.destination} (a PCI address like 0000:3b:00.1 or /sys/bus/mdev/devices/<uuid>), see README "VFIO runner"${host}`,
    };
  }
  if (failed.length > 0) {
    return { ready: false, reason: `VFIO host probe failed: ${what.join("; ")}` };
  }
  return { ready: true, reason: "ready" };
}

function kernelChecks(root: string, config: VfioConfig): VfioCheck[] {
  const out: VfioCheck[] = [];
  const hasVfio = existsSync(join(root, "sys/module/vfio"));
  out.push({
    scope: "host",
    check: "kernel VFIO",
    status: hasVfio ? "ok" : "fail",
    detail: hasVfio ? "vfio module loaded" : "no VFIO in this kernel (/sys/module/vfio is missing)",
    ...(hasVfio
      ? {}
      : {
          fix: "modprobe vfio-pci (kernel built with CONFIG_VFIO, CONFIG_VFIO_PCI); for mdevs also modprobe mtty (CONFIG_SAMPLE_VFIO_MDEV_MTTY, Linux >= 6.7 for migration)",
        }),
  });
  const wantsPci = config.source?.kind === "pci" || config.destination?.kind === "pci";
  if (wantsPci) {
    const groupsDir = join(root, "sys/kernel/iommu_groups");
    const n = listDir(groupsDir).length;
    out.push({
      scope: "host",
      check: "IOMMU",
      status: n > 0 ? "ok" : "fail",
      detail: n > 0 ? `${n} IOMMU groups` : `no IOMMU groups under ${groupsDir}: the IOMMU is off`,
      ...(n > 0
        ? {}
        : {
            fix: "enable VT-d / AMD-Vi in the firmware and boot with intel_iommu=on iommu=pt (Intel) or amd_iommu=on (AMD)",
          }),
    });
  }
  if (config.iommufd) {
    const dev = join(root, "dev/iommu");
    const ok = accessible(dev);
    out.push({
      scope: "host",
      check: "iommufd",
      status: ok ? "ok" : "fail",
      detail: ok ? `${dev} is accessible` : `${dev} is missing or not read-write for this user`,
      ...(ok
        ? {}
        : {
            fix: `modprobe iommufd (CONFIG_IOMMUFD, CONFIG_VFIO_DEVICE_CDEV), or unset ${VFIO_ENV.iommufd} to use VFIO groups`,
          }),
    });
  }
  return out;
}

function deviceChecks(
  root: string,
  side: "source" | "destination",
  device: VfioDevice,
  config: VfioConfig,
): { checks: VfioCheck[]; group?: string } {
  const name = describeVfioDevice(device);
  const checks: VfioCheck[] = [];
  const add = (check: string, status: CheckStatus, detail: string, fix?: string) =>
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
  if (device.kind === "pci") {
    const a = device.address;
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
  } else if (driver === undefined) {
    add(
      "driver",
      "fail",
      "the mdev is bound to no driver",
      "load its vendor driver (modprobe mtty); on kernels before 5.16 also modprobe vfio_mdev",
    );
  } else {
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

  if (config.iommufd) {
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
  } else {
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

  const members = listDir(join(root, "sys/kernel/iommu_groups", group, "devices"));
  const blocking = members.filter((m) => {
    if (device.kind === "mdev" || !/^[0-9a-f]{4}:/.test(m)) return false;
    const d = linkName(join(root, "sys/bus/pci/devices", m, "driver"));
    return d !== undefined && !isVfioPciDriver(d) && !GROUP_SAFE_DRIVERS.includes(d);
  });
  if (blocking.length > 0) {
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
  } else {
    add(
      "group viable",
      "ok",
      `group ${group}: ${members.length > 0 ? members.join(", ") : "(no members listed)"}`,
    );
  }
  return { checks, group };
}

function memlockChecks(root: string, config: VfioConfig, guestRamBytes: number): VfioCheck[] {
  const need = guestRamBytes + MEMLOCK_MARGIN;
  // Type1 pins all guest RAM for a PCI device; an mdev pins only what its driver asks for.
  const pinsAll = config.source?.kind === "pci" || config.destination?.kind === "pci";
  const check = "locked memory";
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readText(join(root, "proc/self/status")) ?? "");
  if (capEff?.[1] && (BigInt(`0x${capEff[1]}`) >> CAP_IPC_LOCK) & 1n) {
    return [{ scope: "host", check, status: "ok", detail: "CAP_IPC_LOCK: no limit applies" }];
  }
  const limits = readText(join(root, "proc/self/limits")) ?? "";
  const m = /^Max locked memory\s+(\S+)/m.exec(limits);
  const soft = m?.[1];
  if (soft === undefined) {
    return [{ scope: "host", check, status: "warn", detail: "cannot read /proc/self/limits" }];
  }
  const ok = soft === "unlimited" || Number(soft) >= need;
  const needKiB = Math.ceil(need / 1024);
  return [
    {
      scope: "host",
      check,
      status: ok ? "ok" : pinsAll ? "fail" : "warn",
      detail: `RLIMIT_MEMLOCK ${soft === "unlimited" ? soft : `${Math.floor(Number(soft) / 1024)} KiB`}; each QEMU may pin ${needKiB} KiB (guest RAM + ${MEMLOCK_MARGIN >> 20} MiB)${
        ok || pinsAll ? "" : "; an mdev pins only what its driver asks, so this may suffice"
      }`,
      ...(ok
        ? {}
        : {
            fix: `ulimit -l ${needKiB} (or unlimited) in the shell that runs the tests; systemd: LimitMEMLOCK=infinity; or /etc/security/limits.conf "<user> - memlock unlimited"`,
          }),
    },
  ];
}

/** The QEMU part of the table: vfio-pci, its migration switch and properties, switchover-ack. */
export function qemuChecks(q: QemuVfioSupport): VfioCheck[] {
  const scope = `qemu ${q.version}`;
  const gap = qemuVfioMigrationGap(q);
  const out: VfioCheck[] = [
    {
      scope,
      check: "vfio-pci device",
      status: q.vfioPci ? "ok" : "fail",
      detail: q.vfioPci ? `${q.properties.length} properties` : `absent (${q.missingReason})`,
      ...(q.vfioPci ? {} : { fix: "use a QEMU built with --enable-vfio" }),
    },
  ];
  if (q.vfioPci) {
    out.push({
      scope,
      check: "migration properties",
      status: gap ? "fail" : "ok",
      detail: gap ?? q.migrationProperties.join(", "),
      ...(gap ? { fix: "use QEMU >= 7.1 (x-enable-migration) or >= 8.1 (enable-migration)" } : {}),
    });
  }
  out.push({
    scope,
    check: "switchover-ack",
    status: q.switchoverAck ? "ok" : "warn",
    detail: q.switchoverAck
      ? "capability present: enabled with return-path"
      : "capability absent (before 8.1): the source may stop before the destination loaded the device's initial data",
  });
  return out;
}

/** The probe as one table (fixed-width columns), failed and warned checks' fixes listed under it. */
export function formatVfioReport(report: VfioProbeReport): string {
  const rows = report.checks.map((c) => [
    c.scope,
    c.device ?? "",
    c.check,
    c.status.toUpperCase(),
    c.detail,
  ]);
  const head = ["scope", "device", "check", "result", "detail"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const fixes = report.checks
    .filter((c) => c.fix && c.status !== "ok")
    .map((c, i) => `  ${i + 1}. ${c.scope}${c.device ? ` ${c.device}` : ""} ${c.check}: ${c.fix}`);
  return [
    line(head),
    ...rows.map(line),
    ...(fixes.length > 0 ? ["fixes:", ...fixes] : []),
    `verdict: ${report.ready ? "ready" : report.reason}`,
  ].join("\n");
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path).sort();
  } catch {
    return [];
  }
}

/** The last component of a symlink's target (sysfs links: driver, iommu_group, mdev_type). */
function linkName(path: string): string | undefined {
  try {
    return basename(readlinkSync(path));
  } catch {
    return undefined;
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function accessible(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}
