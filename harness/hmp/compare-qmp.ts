// `info migrate` against `query-migrate` read on the same side: one table of rows per block of
// MigrationInfo. Each row says which QMP member an HMP value stands for and when QEMU prints its
// line (hmp_info_migrate() skips some lines for zero values, or without `-a`), so a line that is
// missing, extra or different is reported with what HMP printed and what QMP returned.

import type {
  MigrationInfo,
  MigrationStats,
  SocketAddress,
  XBZRLECacheStats,
} from "../qmp/qapi.ts";
import type { HmpMigrationInfo, HmpRamInfo, HmpXbzrleInfo } from "./migration-info.ts";
import { type ApproxBytes, sizeMatches } from "./size.ts";

export interface CompareOptions {
  /**
   * The HMP and QMP snapshots were taken at different moments of a running migration: counters
   * that move (bytes, pages, rates, times) are only checked for presence, not value.
   */
  live?: boolean;
}

/** The layout the HMP text was in: it decides which lines QEMU prints. */
interface Layout {
  flat: boolean;
  /** Sectioned, or an empty text. */
  sectioned: boolean;
}

/** One QMP member and the HMP value read for it. */
interface Row<H, Q> {
  field: string;
  hmp: (h: H) => ApproxBytes | number | string | undefined;
  qmp: (q: Q, layout: Layout) => number | string | undefined;
  /** Whether QEMU prints the line, given this QMP reply. */
  shown: (q: Q, layout: Layout) => boolean;
  /** The value moves during a migration: live snapshots check presence only. */
  moving: boolean;
  /** The line appears only while a moving value is non-zero, so live snapshots may disagree on it. */
  conditional?: (layout: Layout) => boolean;
  /** Compared as a size even when HMP printed nothing. */
  bytes?: boolean;
}

type InfoRow = Row<HmpMigrationInfo, MigrationInfo>;

/** Flat prints total time whenever there is a status (0 when QMP has none); sectioned prints the
 * Time line only when total-time is non-zero, with the other times inside it. */
const timeLineShown = (q: MigrationInfo, { flat }: Layout): boolean =>
  flat ? q.status !== undefined : (q["total-time"] ?? 0) !== 0;

/** A time QEMU prints on the Time line (sectioned) or its own line (flat) when QMP has it. */
const timeShown =
  (member: "setup-time" | "expected-downtime" | "downtime") =>
  (q: MigrationInfo, layout: Layout): boolean =>
    q[member] !== undefined && (layout.flat ? q.status !== undefined : timeLineShown(q, layout));

/** HMP prints the error only for these states (sectioned also while postcopy is paused). */
const errorShown = (q: MigrationInfo, { sectioned }: Layout): boolean =>
  q["error-desc"] !== undefined &&
  (q.status === "failed" || (sectioned && q.status === "postcopy-paused"));

const TOP_ROWS: InfoRow[] = [
  {
    field: "error-desc",
    hmp: (h) => h.errorDesc,
    qmp: (q, layout) => (errorShown(q, layout) ? q["error-desc"] : undefined),
    shown: errorShown,
    moving: false,
  },
  {
    field: "total-time",
    hmp: (h) => h.totalTimeMs,
    qmp: (q) => q["total-time"] ?? 0,
    shown: timeLineShown,
    moving: true,
  },
  {
    field: "setup-time",
    hmp: (h) => h.setupTimeMs,
    qmp: (q) => q["setup-time"],
    shown: timeShown("setup-time"),
    moving: false,
  },
  {
    field: "expected-downtime",
    hmp: (h) => h.expectedDowntimeMs,
    qmp: (q) => q["expected-downtime"],
    shown: timeShown("expected-downtime"),
    moving: true,
  },
  {
    field: "downtime",
    hmp: (h) => h.downtimeMs,
    qmp: (q) => q.downtime,
    shown: timeShown("downtime"),
    moving: false,
  },
  {
    field: "remaining",
    hmp: (h) => h.remaining,
    qmp: (q) => q.remaining,
    shown: (q) => q.remaining !== undefined,
    moving: true,
    bytes: true,
  },
];

const nonZero = (q: MigrationStats, member: keyof MigrationStats): boolean =>
  ((q[member] as number | undefined) ?? 0) !== 0;

/** A MigrationStats member HMP prints always (when QMP has it), or only while it is non-zero. */
function ramRow(
  member: keyof MigrationStats,
  hmp: (h: HmpRamInfo) => ApproxBytes | number | undefined,
  shown: "always" | "non-zero" | ((q: MigrationStats, layout: Layout) => boolean),
  moving = true,
): Row<HmpRamInfo, MigrationStats> {
  return {
    field: `ram.${member}`,
    hmp,
    qmp: (q) => q[member] as number | undefined,
    // "always" means whenever query-migrate has the member: a schema that makes it optional
    // (destination-ram-stats.patch) leaves it out, and then HMP must not print it either.
    shown:
      shown === "always"
        ? (q) => q[member] !== undefined
        : shown === "non-zero"
          ? (q) => nonZero(q, member)
          : shown,
    moving,
    ...(shown === "non-zero" ? { conditional: () => true } : {}),
  };
}

/** Flat prints the channel byte counts only when non-zero; sectioned whenever QMP has them. */
const channelShown =
  (member: keyof MigrationStats) =>
  (q: MigrationStats, { flat, sectioned }: Layout): boolean =>
    (sectioned && q[member] !== undefined) || (flat && nonZero(q, member));

const RAM_ROWS: Row<HmpRamInfo, MigrationStats>[] = [
  ramRow("transferred", (h) => h.transferred, "always"),
  ramRow("remaining", (h) => h.remaining, "always"),
  ramRow("total", (h) => h.total, "always", false),
  ramRow("page-size", (h) => h.pageSize, "always", false),
  ramRow(
    "normal-bytes",
    (h) => h.normalBytes,
    (_, { flat }) => flat,
  ),
  ramRow("multifd-bytes", (h) => h.multifdBytes, "always"),
  {
    ...ramRow("precopy-bytes", (h) => h.precopyBytes, channelShown("precopy-bytes")),
    conditional: ({ flat }) => flat,
  },
  {
    ...ramRow("postcopy-bytes", (h) => h.postcopyBytes, channelShown("postcopy-bytes")),
    conditional: ({ flat }) => flat,
  },
  ramRow("downtime-bytes", (h) => h.downtimeBytes, "non-zero"),
  ramRow("duplicate", (h) => h.duplicatePages, "always"),
  ramRow("normal", (h) => h.normalPages, "always"),
  ramRow(
    "skipped",
    (h) => h.skippedPages,
    (q, { flat }) => flat && q.skipped !== undefined,
    false,
  ),
  ramRow("dirty-sync-count", (h) => h.dirtySyncCount, "always"),
  ramRow("pages-per-second", (h) => h.pagesPerSecond, "always"),
  ramRow("dirty-pages-rate", (h) => h.dirtyPagesRate, "non-zero"),
  ramRow("postcopy-requests", (h) => h.postcopyRequests, "non-zero"),
  ramRow("dirty-sync-missed-zero-copy", (h) => h.zeroCopyFallbacks, "non-zero"),
];

/** Flat has its own vfio line; sectioned adds vfio= to the Channels line, so needs ram. */
const VFIO_ROWS: InfoRow[] = [
  {
    field: "vfio.transferred",
    hmp: (h) => h.vfioTransferred,
    qmp: (q) => q.vfio?.transferred,
    shown: (q, { flat }) => q.vfio !== undefined && (flat || q.ram !== undefined),
    moving: true,
    bytes: true,
  },
];

/** An XBZRLE cache member: HMP prints all of them whenever QMP has the cache statistics. */
const xbzrleRow = (
  member: keyof XBZRLECacheStats,
  hmp: (x: HmpXbzrleInfo) => ApproxBytes | number | undefined,
  moving = true,
): Row<HmpXbzrleInfo, XBZRLECacheStats> => ({
  field: `xbzrle-cache.${member}`,
  hmp,
  qmp: (q) => q[member],
  shown: () => true,
  moving,
});

const XBZRLE_ROWS: Row<HmpXbzrleInfo, XBZRLECacheStats>[] = [
  xbzrleRow("cache-size", (x) => x.cacheSize, false),
  { ...xbzrleRow("bytes", (x) => x.transferred), bytes: true },
  xbzrleRow("pages", (x) => x.pages),
  xbzrleRow("cache-miss", (x) => x.cacheMiss),
  xbzrleRow("overflow", (x) => x.overflow),
];

/** A top-level number HMP prints (with `-a` when sectioned) whenever QMP has it. */
const whenPresent = (
  member:
    | "cpu-throttle-percentage"
    | "dirty-limit-throttle-time-per-round"
    | "dirty-limit-ring-full-time"
    | "postcopy-blocktime",
  hmp: (h: HmpMigrationInfo) => number | undefined,
): InfoRow => ({
  field: member,
  hmp,
  qmp: (q) => q[member],
  shown: (q) => q[member] !== undefined,
  moving: true,
});

/** Lines the sectioned layout prints only with `-a`. */
const EXTRA_ROWS: InfoRow[] = [
  whenPresent("cpu-throttle-percentage", (h) => h.cpuThrottlePercentage),
  whenPresent("dirty-limit-throttle-time-per-round", (h) => h.dirtyLimitThrottleTimeUs),
  whenPresent("dirty-limit-ring-full-time", (h) => h.dirtyLimitRingFullTimeUs),
  whenPresent("postcopy-blocktime", (h) => h.postcopyBlocktimeMs),
];

/** A list member, compared whole as JSON. */
interface ListRow {
  field: string;
  hmp: (h: HmpMigrationInfo) => unknown;
  qmp: (q: MigrationInfo) => unknown;
  /** How HMP's side is shown in the message. */
  showHmp?: (json: string) => string;
}

const LIST_ROWS: ListRow[] = [
  {
    field: "blocked-reasons",
    hmp: (h) => h.blockedReasons,
    qmp: (q) => q["blocked-reasons"],
    // This message has always quoted HMP's JSON as a string.
    showHmp: (json) => JSON.stringify(json),
  },
  {
    field: "socket-address",
    hmp: (h) => h.socketAddresses,
    qmp: (q) => q["socket-address"]?.map(socketUri),
  },
];

const EXTRA_LIST_ROWS: ListRow[] = [
  {
    field: "postcopy-vcpu-blocktime",
    hmp: (h) => h.postcopyVcpuBlocktimeMs,
    qmp: (q) => q["postcopy-vcpu-blocktime"],
  },
];

/**
 * Disagreements between `info migrate` and `query-migrate` taken on the same side, one message per
 * field naming the QMP member, what HMP printed and what QMP returned. Empty when they agree.
 */
export function compareWithQmp(
  hmp: HmpMigrationInfo,
  qmp: MigrationInfo,
  options: CompareOptions = {},
): string[] {
  const out: string[] = [];
  const live = options.live ?? false;
  const layout: Layout = { flat: hmp.format === "flat", sectioned: hmp.format !== "flat" };
  checkStatus(out, hmp, qmp);
  checkRows(out, TOP_ROWS, hmp, qmp, layout, live);
  checkRam(out, hmp.ram, qmp.ram, layout, live);
  checkRows(out, VFIO_ROWS, hmp, qmp, layout, live);
  checkLists(out, LIST_ROWS, hmp, qmp);
  if (layout.flat || hmp.showsAll === true) {
    const xq = qmp["xbzrle-cache"];
    checkGroup(out, "xbzrle-cache", hmp.xbzrle, xq, "QMP has it", "XBZRLE lines", "has none");
    if (hmp.xbzrle && xq) checkRows(out, XBZRLE_ROWS, hmp.xbzrle, xq, layout, live);
    checkRows(out, EXTRA_ROWS, hmp, qmp, layout, live);
    checkLists(out, EXTRA_LIST_ROWS, hmp, qmp);
  }
  return out;
}

function checkStatus(out: string[], hmp: HmpMigrationInfo, qmp: MigrationInfo): void {
  if (hmp.status === qmp.status) return;
  const h = hmp.status === undefined ? "shows no status" : JSON.stringify(hmp.status);
  const q = qmp.status === undefined ? "has no status" : JSON.stringify(qmp.status);
  out.push(`status: HMP ${h} but QMP ${q}`);
}

function checkRam(
  out: string[],
  h: HmpRamInfo | undefined,
  q: MigrationStats | undefined,
  layout: Layout,
  live: boolean,
): void {
  checkGroup(out, "ram", h, q, "QMP has ram statistics", "RAM lines", "has no ram member");
  if (!h || !q) return;
  checkRows(out, RAM_ROWS, h, q, layout, live);
  if (h.mbps !== undefined && !live && Math.abs(h.mbps - q.mbps) > 0.005 + 1e-9) {
    out.push(`ram.mbps: HMP ${h.mbps.toFixed(2)} but QMP ${q.mbps}`);
  }
}

/** A group of lines (RAM, XBZRLE) that HMP prints exactly when QMP has the member. */
function checkGroup(
  out: string[],
  field: string,
  h: object | undefined,
  q: object | undefined,
  qmpHasIt: string,
  lines: string,
  qmpLacksIt: string,
): void {
  if ((h === undefined) === (q === undefined)) return;
  out.push(
    q
      ? `${field}: ${qmpHasIt} but HMP shows no ${lines}`
      : `${field}: HMP shows ${lines} but QMP ${qmpLacksIt}`,
  );
}

function checkRows<H, Q>(
  out: string[],
  rows: readonly Row<H, Q>[],
  h: H,
  q: Q,
  layout: Layout,
  live: boolean,
): void {
  for (const row of rows) {
    const moving = live && row.moving;
    const hv = row.hmp(h);
    const shown = row.shown(q, layout);
    if (moving && row.conditional?.(layout) && (hv === undefined) === shown) continue;
    const qv = row.qmp(q, layout);
    if (row.bytes || typeof hv === "object") {
      checkBytes(
        out,
        row.field,
        hv as ApproxBytes | undefined,
        qv as number | undefined,
        shown,
        moving,
      );
    } else {
      checkValue(out, row.field, hv, qv, shown, moving);
    }
  }
}

function checkLists(
  out: string[],
  rows: readonly ListRow[],
  hmp: HmpMigrationInfo,
  qmp: MigrationInfo,
): void {
  for (const row of rows) {
    const h = JSON.stringify(row.hmp(hmp) ?? null);
    const q = JSON.stringify(row.qmp(qmp) ?? null);
    if (h !== q) out.push(`${row.field}: HMP ${row.showHmp?.(h) ?? h} but QMP ${q}`);
  }
}

/** What socket_uri() prints for the address types it knows. */
function socketUri(a: SocketAddress): string {
  switch (a.type) {
    case "inet":
      return `tcp:${a.host}:${a.port}`;
    case "unix":
      return `unix:${a.path}`;
    case "fd":
      return `fd:${String(a.str)}`;
    case "vsock":
      return `vsock:${String(a.cid)}:${a.port}`;
    default:
      return `<${a.type}>`;
  }
}

function describeBytes(b: ApproxBytes): string {
  return b.min === b.max
    ? `"${b.text}" (${b.min} bytes)`
    : `"${b.text}" (${b.min}..${b.max} bytes)`;
}

/**
 * One member: `shown` is whether QEMU prints a line for it given the QMP reply; `moving` skips the
 * value comparison (live snapshots) but keeps the presence check.
 */
function checkValue(
  out: string[],
  field: string,
  hmp: number | string | undefined,
  qmp: number | string | undefined,
  shown: boolean,
  moving: boolean,
): void {
  const show = (v: number | string) => (typeof v === "string" ? JSON.stringify(v) : String(v));
  if (!shown) {
    if (hmp !== undefined)
      out.push(
        `${field}: HMP shows ${show(hmp)} but QMP ${qmp === undefined ? "has no such member" : `has ${show(qmp)}, which HMP should not print`}`,
      );
    return;
  }
  if (hmp === undefined) {
    out.push(
      `${field}: QMP ${qmp === undefined ? "implies a line" : show(qmp)} but HMP shows no line for it`,
    );
    return;
  }
  if (!moving && hmp !== qmp)
    out.push(
      `${field}: HMP ${show(hmp)} but QMP ${qmp === undefined ? "has no such member" : show(qmp)}`,
    );
}

function checkBytes(
  out: string[],
  field: string,
  hmp: ApproxBytes | undefined,
  qmp: number | undefined,
  shown: boolean,
  moving: boolean,
): void {
  if (!shown) {
    if (hmp !== undefined)
      out.push(
        `${field}: HMP shows ${describeBytes(hmp)} but QMP ${qmp === undefined ? "has no such member" : `has ${qmp}, which HMP should not print`}`,
      );
    return;
  }
  if (hmp === undefined) {
    out.push(`${field}: QMP ${qmp} but HMP shows no line for it`);
    return;
  }
  if (moving) return;
  if (qmp === undefined) out.push(`${field}: HMP ${describeBytes(hmp)} but QMP has no such member`);
  else if (!sizeMatches(qmp, hmp)) out.push(`${field}: HMP ${describeBytes(hmp)} but QMP ${qmp}`);
}
