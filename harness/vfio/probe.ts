// Can this host pass the configured devices through and migrate them? One table of checks per
// device and per QEMU binary, each failure with the exact command that fixes it. Everything is
// read below `root` (sysfs, /dev, /proc/self), so unit tests run the probe on fake trees.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { MiB } from "../util/units.ts";
import type { VfioCheck } from "./check.ts";
import { VFIO_ENV, type VfioConfig, vfioConfigured } from "./config.ts";
import { type QemuVfioSupport, qemuVfioMigrationGap } from "./device.ts";
import { deviceChecks } from "./device-checks.ts";
import { accessible, listDir, readText } from "./host-files.ts";

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

/** QEMU's own headroom over guest RAM that gets pinned too (ROMs, video RAM...). */
const MEMLOCK_MARGIN = 64 * MiB;
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
      detail: `RLIMIT_MEMLOCK ${soft === "unlimited" ? soft : `${Math.floor(Number(soft) / 1024)} KiB`}; each QEMU may pin ${needKiB} KiB (guest RAM + ${MEMLOCK_MARGIN / MiB} MiB)${
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
