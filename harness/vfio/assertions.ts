// What a migration with a VFIO device must show, as pure functions over query-migrate replies and
// HMP text, so the suite and the unit tests (on recorded data) run the very same checks. Each
// returns the problems found, one sentence each naming the field, the side and the values; an
// empty list is a pass.
// QEMU facts used (hw/vfio/migration.c, migration/migration-hmp-cmds.c, docs/devel/migration/vfio.rst):
//  - `vfio {transferred}` is in query-migrate while VFIO migration is active (source, 5.2+);
//    transferred counts device data bytes put on the stream, pre-copy and stop-copy alike.
//  - HMP: flat format prints `vfio device transferred: N kbytes` (bytes >> 10) last; the
//    sectioned format appends `, vfio=<size>` to the `Channels:` line, which only exists
//    inside `RAM info:`.
//  - a device that cannot migrate adds a blocker (query-migrate `blocked-reasons`, 6.0+) unless
//    enable-migration=on, which fails realize instead.
//  - postcopy: 8.2+ refuses `migrate` with "<dev>: VFIO migration is not supported with postcopy
//    migration"; before, nothing stops it and the destination can crash.

import { parseInfoMigrate } from "../hmp/info-migrate.ts";
import { sizeMatches } from "../hmp/size.ts";
import type { MigrationInfo, MigrationStatus } from "../qmp/qapi.ts";

/** Statuses in which the source fills in ram/vfio (fill_source_migration_info). */
const STATS_STATUSES: readonly MigrationStatus[] = [
  "active",
  "postcopy-active",
  "postcopy-paused",
  "postcopy-recover",
  "pre-switchover",
  "device",
  "wait-unplug",
  "cancelling",
  "completed",
];

/** Known VFIO blocker texts and what to do about each. */
const BLOCKER_ADVICE: readonly [RegExp, string][] = [
  [
    /Migration is disabled for VFIO device/,
    "enable-migration=off was set; set QEMU_MIGTEST_VFIO_ENABLE_MIGRATION=on",
  ],
  [
    /VFIO migration is not supported in kernel|VFIO device doesn't support migration/,
    "the host driver has no migration support: bind the vendor's vfio-pci variant driver (or use an mtty mdev on Linux >= 6.7)",
  ],
  [
    /doesn't support (device and IOMMU |device )?dirty tracking/,
    "no dirty page tracking for this device: QEMU_MIGTEST_VFIO_ENABLE_MIGRATION=on migrates it anyway (QEMU then treats all its DMA pages as dirty)",
  ],
  [/not supported with vIOMMU/, "remove the vIOMMU (intel-iommu / virtio-iommu) from the guest"],
  [
    /multiple VFIO devices/,
    "several VFIO devices migrate together only when all support P2P quiescent state: pass one device per side",
  ],
];

/** A blocker reason with the harness's advice appended when the text is a known VFIO one. */
export function explainBlocker(reason: string): string {
  const advice = BLOCKER_ADVICE.find(([re]) => re.test(reason))?.[1];
  return advice ? `${reason} (${advice})` : reason;
}

/**
 * A refusal message when `side` reports migration blockers (before `migrate`, so a suite can
 * say why instead of timing out), else undefined.
 */
export function blockerRefusal(side: string, info: MigrationInfo): string | undefined {
  const reasons = info["blocked-reasons"] ?? [];
  if (reasons.length === 0) return undefined;
  return `the ${side} cannot migrate: query-migrate blocked-reasons: ${reasons
    .map((r) => JSON.stringify(explainBlocker(r)))
    .join(", ")}`;
}

export interface VfioTransferOptions {
  /**
   * The device sends data while the guest runs (VFIO_MIGRATION_PRE_COPY, QEMU 8.1+): some
   * `active` snapshot must then show vfio.transferred > 0. Without it, all device data moves
   * in stop-copy and only the final snapshot shows it.
   */
  expectPrecopyData: boolean;
}

/**
 * The source's query-migrate replies, in time order, over a migration with a VFIO device:
 * `vfio` present whenever QEMU reports stats, `transferred` never going down, more than zero at
 * the end.
 */
export function checkVfioTransferred(
  snapshots: readonly MigrationInfo[],
  options: VfioTransferOptions,
): string[] {
  const out: string[] = [];
  let last: number | undefined;
  let sawPrecopy = false;
  for (const [i, s] of snapshots.entries()) {
    if (!STATS_STATUSES.includes(s.status ?? "none")) continue;
    const t = s.vfio?.transferred;
    if (t === undefined) {
      out.push(
        `source snapshot ${i} (status ${s.status}) has no vfio member: QEMU does not count the device as migrating`,
      );
      continue;
    }
    if (last !== undefined && t < last) {
      out.push(`source vfio.transferred went down from ${last} to ${t} at snapshot ${i}`);
    }
    last = t;
    if (s.status === "active" && t > 0) sawPrecopy = true;
  }
  const final = [...snapshots].reverse().find((s) => s.status === "completed");
  if (!final) out.push("no completed source snapshot to read the final vfio.transferred from");
  else if (!((final.vfio?.transferred ?? 0) > 0)) {
    out.push(
      `source vfio.transferred is ${final.vfio?.transferred ?? "absent"} after completion: no device state was sent`,
    );
  }
  if (options.expectPrecopyData && !sawPrecopy) {
    out.push(
      "no active source snapshot shows vfio.transferred > 0: the device sent no pre-copy data while the guest ran",
    );
  }
  return out;
}

/**
 * Top-level `remaining` (11.1+, system-wide) counts device state on top of RAM, so while active
 * it is never below ram.remaining. `expectTopLevel`: the binary's schema has the member, so
 * some active snapshot must carry it.
 */
export function checkRemainingCountsDevices(
  snapshots: readonly MigrationInfo[],
  expectTopLevel: boolean,
): string[] {
  const out: string[] = [];
  let checked = 0;
  for (const [i, s] of snapshots.entries()) {
    if (s.status !== "active" || s.remaining === undefined || !s.ram) continue;
    checked++;
    if (s.remaining < s.ram.remaining) {
      out.push(
        `source snapshot ${i}: remaining ${s.remaining} < ram.remaining ${s.ram.remaining}: the system-wide figure leaves out device state`,
      );
    }
  }
  if (expectTopLevel && checked === 0) {
    out.push(
      "no active source snapshot carries top-level remaining, though this QEMU's schema has it",
    );
  }
  return out;
}

export interface HmpVfioOptions {
  /** HMP and QMP were read at different moments of a running migration: check presence only. */
  live?: boolean;
}

/**
 * `info migrate` text against query-migrate taken on the same side: the VFIO figure is printed
 * exactly when QMP has `vfio` (and, in the sectioned format, `ram`), with a value that rounds to
 * QMP's.
 */
export function checkHmpVfio(
  text: string,
  qmp: MigrationInfo,
  options: HmpVfioOptions = {},
): string[] {
  const hmp = parseInfoMigrate(text);
  const out = hmp.unknownLines.map((l) => `info migrate line not understood: ${JSON.stringify(l)}`);
  const where =
    hmp.format === "flat" ? '"vfio device transferred:" line' : '"vfio=" on the Channels line';
  const expected = qmp.vfio !== undefined && (hmp.format === "flat" || qmp.ram !== undefined);
  const shown = hmp.vfioTransferred;
  if (expected && !shown) {
    out.push(
      `query-migrate has vfio.transferred=${qmp.vfio?.transferred} but info migrate has no ${where}`,
    );
  } else if (!expected && shown) {
    out.push(`info migrate shows ${where} (${shown.text}) but query-migrate has no vfio member`);
  } else if (shown && qmp.vfio && !options.live && !sizeMatches(qmp.vfio.transferred, shown)) {
    out.push(
      `info migrate ${where} says ${shown.text} but query-migrate vfio.transferred is ${qmp.vfio.transferred}`,
    );
  }
  return out;
}

export type PostcopyOutcome =
  | { kind: "refused"; message: string }
  | { kind: "failed"; message: string }
  | { kind: "completed" };

/** The refusal QEMU 8.2+ gives `migrate` with postcopy-ram on and a VFIO device. */
const POSTCOPY_REFUSAL = /VFIO migration is not supported with postcopy migration/;

/** Whether this QEMU refuses postcopy with VFIO (8.2+); older ones must not be tried. */
export function refusesVfioPostcopy(version: { major: number; minor: number }): boolean {
  return version.major > 8 || (version.major === 8 && version.minor >= 2);
}

/** Postcopy with a VFIO device must be refused at `migrate`, with QEMU's documented message. */
export function checkPostcopyRefused(outcome: PostcopyOutcome): string[] {
  if (outcome.kind === "refused" && POSTCOPY_REFUSAL.test(outcome.message)) return [];
  if (outcome.kind === "refused") {
    return [
      `migrate with postcopy-ram was refused, but not for VFIO: ${JSON.stringify(outcome.message)}`,
    ];
  }
  if (outcome.kind === "failed") {
    return [
      `migrate with postcopy-ram was accepted and then failed (${JSON.stringify(outcome.message)}); QEMU should refuse it up front for a VFIO device`,
    ];
  }
  return [
    "migrate with postcopy-ram was accepted and completed; QEMU documents postcopy as unsupported for VFIO and should refuse it",
  ];
}

/** One function of `info pci`: where it sits and what it is. */
export interface InfoPciDevice {
  bus: number;
  slot: number;
  function: number;
  /** "Ethernet controller", "Serial port", ... */
  className: string;
  /** "8086:100e" */
  vendorDevice: string;
  subsystem?: string;
  /** qdev id, "" when none. */
  id: string;
  bars: string[];
}

/** Parse HMP `info pci` (hw/pci/pci-hmp-cmds.c) into its functions. */
export function parseInfoPci(text: string): InfoPciDevice[] {
  const out: InfoPciDevice[] = [];
  let cur: InfoPciDevice | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const head = /^ {2}Bus +(\d+), device +(\d+), function (\d+):$/.exec(raw);
    if (head) {
      cur = {
        bus: Number(head[1]),
        slot: Number(head[2]),
        function: Number(head[3]),
        className: "",
        vendorDevice: "",
        id: "",
        bars: [],
      };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    const cls = /^ {4}(.+): PCI device ([0-9a-f]{4}:[0-9a-f]{4})$/.exec(raw);
    if (cls?.[1] && cls[2]) {
      cur.className = cls[1];
      cur.vendorDevice = cls[2];
      continue;
    }
    const sub = /^ {6}PCI subsystem ([0-9a-f]{4}:[0-9a-f]{4})$/.exec(raw);
    if (sub?.[1]) cur.subsystem = sub[1];
    const bar = /^ {6}(BAR\d+: .*)$/.exec(raw);
    if (bar?.[1]) cur.bars.push(bar[1]);
    const id = /^ {6}id "(.*)"$/.exec(raw);
    if (id) cur.id = id[1] ?? "";
  }
  return out;
}

/**
 * The passed-through function, found by its qdev id in the destination's `info pci`, is the
 * same device the source had: same slot, class and vendor:device.
 */
export function checkDeviceAfterMigration(
  sourceInfoPci: string,
  destinationInfoPci: string,
  id: string,
): string[] {
  const src = parseInfoPci(sourceInfoPci).find((d) => d.id === id);
  const dst = parseInfoPci(destinationInfoPci).find((d) => d.id === id);
  if (!src) return [`source info pci has no device with id "${id}"`];
  if (!dst) return [`destination info pci has no device with id "${id}" after migration`];
  const out: string[] = [];
  for (const k of ["bus", "slot", "function", "className", "vendorDevice", "subsystem"] as const) {
    if (src[k] !== dst[k]) {
      out.push(
        `device "${id}" ${k}: source ${JSON.stringify(src[k])}, destination ${JSON.stringify(dst[k])}`,
      );
    }
  }
  return out;
}
