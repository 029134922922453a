// HMP `info migrate` text, parsed into one shape for both layouts QEMU has printed:
//  - "flat" (QEMU <= 10.0): `globals:` block, then `Migration status: ...`, `transferred ram: N kbytes`...
//  - "sectioned" (QEMU >= 10.1): `Status:\t\t...`, `Time (ms):\t\ttotal=...`, `RAM info:` sub-lines,
//    sizes from size_to_str(); `Globals:` and the rest only with `info migrate -a`.
// The parser is strict on purpose: a line it does not fully understand goes to `unknownLines`, so a
// test notices when QEMU prints something new instead of silently reading past it.

import type { MigrationInfo, SocketAddress } from "../qmp/qapi.ts";
import {
  type ApproxBytes,
  exactBytes,
  kbytesToApprox,
  parseSizeToStr,
  sizeMatches,
} from "./size.ts";

export type InfoMigrateFormat = "flat" | "sectioned" | "empty";

/**
 * The `ram` part (MigrationStats) as HMP shows it. Byte quantities are ApproxBytes because HMP
 * rounds them (flat: whole KiB; sectioned: 3 significant digits); page counts and rates are exact.
 */
export interface HmpRamInfo {
  transferred?: ApproxBytes;
  remaining?: ApproxBytes;
  total?: ApproxBytes;
  pageSize?: ApproxBytes;
  /** Mbit/s as printed with two decimals. */
  mbps?: number;
  /** MigrationStats `duplicate` (sectioned: `zero=`). */
  duplicatePages?: number;
  skippedPages?: number; // flat only, removed in 9.1
  normalPages?: number;
  normalBytes?: ApproxBytes; // flat only
  precopyBytes?: ApproxBytes;
  multifdBytes?: ApproxBytes;
  postcopyBytes?: ApproxBytes;
  /** Flat: kbytes (ApproxBytes). Sectioned: the raw integer, exact. */
  downtimeBytes?: ApproxBytes | number;
  dirtySyncCount?: number;
  pagesPerSecond?: number;
  dirtyPagesRate?: number;
  postcopyRequests?: number;
  /** MigrationStats `dirty-sync-missed-zero-copy`. */
  zeroCopyFallbacks?: number;
}

/** XBZRLECacheStats as HMP shows it (flat: always; sectioned: only with `-a`). */
export interface HmpXbzrleInfo {
  cacheSize?: number;
  /** Flat prints kbytes, sectioned the exact count. */
  transferred?: ApproxBytes;
  pages?: number;
  cacheMiss?: number;
  cacheMissRate?: number;
  encodingRate?: number;
  overflow?: number;
}

/** Block migration (flat format, QEMU <= 9.0). */
export interface HmpDiskInfo {
  transferred?: ApproxBytes;
  remaining?: ApproxBytes;
  total?: ApproxBytes;
}

/** Old compression statistics (flat format, QEMU <= 9.0). */
export interface HmpCompressionInfo {
  pages?: number;
  busy?: number;
  busyRate?: number;
  compressedSize?: ApproxBytes;
  compressionRate?: number;
}

export interface HmpLatencyBucket {
  from: string;
  to: string;
  count: number;
}

/** MigrationInfo as far as HMP `info migrate` shows it. Members are absent when HMP printed no line. */
export interface HmpMigrationInfo {
  format: InfoMigrateFormat;
  status?: string;
  errorDesc?: string;
  totalTimeMs?: number;
  setupTimeMs?: number;
  expectedDowntimeMs?: number;
  downtimeMs?: number;
  /** 11.1+ system-wide remaining bytes (`Remaining:`). */
  remaining?: ApproxBytes;
  ram?: HmpRamInfo;
  vfioTransferred?: ApproxBytes;
  blockedReasons?: string[];
  /** URIs as QEMU prints them, e.g. "tcp:127.0.0.1:4444". */
  socketAddresses?: string[];
  globals?: Record<string, string>;
  xbzrle?: HmpXbzrleInfo;
  disk?: HmpDiskInfo;
  compression?: HmpCompressionInfo;
  cpuThrottlePercentage?: number;
  dirtyLimitThrottleTimeUs?: number;
  dirtyLimitRingFullTimeUs?: number;
  postcopyBlocktimeMs?: number;
  postcopyVcpuBlocktimeMs?: number[];
  /** Values as printed; the unit QEMU prints in the label is kept in `postcopyLatencyUnit`. */
  postcopyLatency?: number;
  postcopyNonVcpuLatency?: number;
  postcopyVcpuLatency?: number[];
  postcopyLatencyUnit?: string;
  postcopyLatencyDistribution?: HmpLatencyBucket[];
  /** Sectioned text with a `Globals:` block, i.e. `info migrate -a`: the `-a`-only lines were printed. */
  showsAll?: boolean;
  /** Every line the parser did not understand, verbatim. A correct parse of known QEMU output has none. */
  unknownLines: string[];
}

/** Which layout `text` is in, judged from the text alone. */
export function detectInfoMigrateFormat(text: string): InfoMigrateFormat {
  const lines = splitLines(text);
  if (lines.every((l) => l.trim() === "")) return "empty";
  // The flat layout always starts with its globals block; `Migration status:` backs that up.
  if (lines.some((l) => l === "globals:" || l.startsWith("Migration status: "))) return "flat";
  return "sectioned";
}

/** Parse `info migrate` (or `info migrate -a`) text from any QEMU since 7.2. */
export function parseInfoMigrate(text: string): HmpMigrationInfo {
  const format = detectInfoMigrateFormat(text);
  const info: HmpMigrationInfo = { format, unknownLines: [] };
  const lines = splitLines(text);
  if (format === "flat") parseFlat(lines, info);
  else if (format === "sectioned") parseSectioned(lines, info);
  return info;
}

function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

// ---------------------------------------------------------------- shared value grammar

const UINT = /^\d+$/;
const FIXED2 = /^\d+\.\d{2}$/;

function uint(s: string | undefined): number | undefined {
  return s !== undefined && UINT.test(s) ? Number(s) : undefined;
}

function fixed2(s: string | undefined): number | undefined {
  return s !== undefined && FIXED2.test(s) ? Number(s) : undefined;
}

/** `N <unit>` with a fixed unit word, e.g. "12 ms", "3 pages". */
function uintWithUnit(s: string, unit: string): number | undefined {
  const suffix = ` ${unit}`;
  return s.endsWith(suffix) ? uint(s.slice(0, -suffix.length)) : undefined;
}

function kbytes(s: string): ApproxBytes | undefined {
  const n = uintWithUnit(s, "kbytes");
  return n === undefined ? undefined : kbytesToApprox(n, s);
}

function size(s: string | undefined): ApproxBytes | undefined {
  if (s === undefined) return undefined;
  try {
    return parseSizeToStr(s);
  } catch {
    return undefined;
  }
}

/** `status` or `status (error text)`. */
function statusValue(s: string, info: HmpMigrationInfo): boolean {
  const m = /^(\S+)(?: \((.*)\))?$/.exec(s);
  if (!m?.[1]) return false;
  info.status = m[1];
  if (m[2] !== undefined) info.errorDesc = m[2];
  return true;
}

/** A line `label: value` (flat) or `label: \t\tvalue` (sectioned; pasted copies have spaces). */
function splitLabel(line: string): { indent: string; label: string; value: string } | undefined {
  const m = /^([ \t]*)([^:]+):(?:[ \t]+(.*))?$/.exec(line);
  if (!m || m[2] === undefined) return undefined;
  return { indent: m[1] ?? "", label: m[2], value: m[3] ?? "" };
}

/** "a=1, b=2" into a map; undefined when a part is not `key=value` or a key repeats. */
function keyValues(s: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  for (const part of s.split(", ")) {
    const m = /^([a-z_]+)=(.+)$/.exec(part);
    if (!m?.[1] || m[2] === undefined || out.has(m[1])) return undefined;
    out.set(m[1], m[2]);
  }
  return out;
}

/**
 * Read `key=value` parts into fields: each known key's reader returns false on a bad value.
 * Returns false when a part is unknown, malformed, or a required key is missing.
 */
function readKeyValues(
  s: string,
  readers: Record<string, (v: string) => boolean>,
  required: readonly string[],
): boolean {
  const kv = keyValues(s);
  if (!kv) return false;
  let ok = required.every((k) => kv.has(k));
  for (const [k, v] of kv) {
    const read = own(readers, k);
    if (!read?.(v)) ok = false;
  }
  return ok;
}

/** A table entry, never something inherited from Object.prototype ("constructor"...). */
function own<T>(table: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

function set<T>(v: T | undefined, assign: (v: T) => void): boolean {
  if (v === undefined) return false;
  assign(v);
  return true;
}

// ---------------------------------------------------------------- flat format (<= 10.0)

type Reader = (value: string, info: HmpMigrationInfo) => boolean;

const ram = (info: HmpMigrationInfo): HmpRamInfo => {
  info.ram ??= {};
  return info.ram;
};
const xbzrle = (info: HmpMigrationInfo): HmpXbzrleInfo => {
  info.xbzrle ??= {};
  return info.xbzrle;
};
const disk = (info: HmpMigrationInfo): HmpDiskInfo => {
  info.disk ??= {};
  return info.disk;
};
const compression = (info: HmpMigrationInfo): HmpCompressionInfo => {
  info.compression ??= {};
  return info.compression;
};

const ms = (s: string) => uintWithUnit(s, "ms");
const pages = (s: string) => uintWithUnit(s, "pages");

/** Every `label: value` line of the flat layout outside its globals and list blocks. */
const FLAT_LINES: Record<string, Reader> = {
  "Migration status": (v, i) => statusValue(v, i),
  "total time": (v, i) => set(ms(v), (n) => (i.totalTimeMs = n)),
  "expected downtime": (v, i) => set(ms(v), (n) => (i.expectedDowntimeMs = n)),
  downtime: (v, i) => set(ms(v), (n) => (i.downtimeMs = n)),
  setup: (v, i) => set(ms(v), (n) => (i.setupTimeMs = n)),
  "transferred ram": (v, i) => set(kbytes(v), (b) => (ram(i).transferred = b)),
  throughput: (v, i) => flatMbps(v, i),
  "remaining ram": (v, i) => set(kbytes(v), (b) => (ram(i).remaining = b)),
  "total ram": (v, i) => set(kbytes(v), (b) => (ram(i).total = b)),
  duplicate: (v, i) => set(pages(v), (n) => (ram(i).duplicatePages = n)),
  skipped: (v, i) => set(pages(v), (n) => (ram(i).skippedPages = n)),
  normal: (v, i) => set(pages(v), (n) => (ram(i).normalPages = n)),
  "normal bytes": (v, i) => set(kbytes(v), (b) => (ram(i).normalBytes = b)),
  "dirty sync count": (v, i) => set(uint(v), (n) => (ram(i).dirtySyncCount = n)),
  "page size": (v, i) => set(kbytes(v), (b) => (ram(i).pageSize = b)),
  "multifd bytes": (v, i) => set(kbytes(v), (b) => (ram(i).multifdBytes = b)),
  "pages-per-second": (v, i) => set(uint(v), (n) => (ram(i).pagesPerSecond = n)),
  "dirty pages rate": (v, i) => set(pages(v), (n) => (ram(i).dirtyPagesRate = n)),
  "postcopy request count": (v, i) => set(uint(v), (n) => (ram(i).postcopyRequests = n)),
  "precopy ram": (v, i) => set(kbytes(v), (b) => (ram(i).precopyBytes = b)),
  "downtime ram": (v, i) => set(kbytes(v), (b) => (ram(i).downtimeBytes = b)),
  "postcopy ram": (v, i) => set(kbytes(v), (b) => (ram(i).postcopyBytes = b)),
  "Zero-copy-send fallbacks happened": (v, i) =>
    set(uintWithUnit(v, "times"), (n) => (ram(i).zeroCopyFallbacks = n)),
  "transferred disk": (v, i) => set(kbytes(v), (b) => (disk(i).transferred = b)),
  "remaining disk": (v, i) => set(kbytes(v), (b) => (disk(i).remaining = b)),
  "total disk": (v, i) => set(kbytes(v), (b) => (disk(i).total = b)),
  "cache size": (v, i) => set(uintWithUnit(v, "bytes"), (n) => (xbzrle(i).cacheSize = n)),
  "xbzrle transferred": (v, i) => set(kbytes(v), (b) => (xbzrle(i).transferred = b)),
  "xbzrle pages": (v, i) => set(pages(v), (n) => (xbzrle(i).pages = n)),
  "xbzrle cache miss": (v, i) => set(pages(v), (n) => (xbzrle(i).cacheMiss = n)),
  "xbzrle cache miss rate": (v, i) => set(fixed2(v), (n) => (xbzrle(i).cacheMissRate = n)),
  "xbzrle encoding rate": (v, i) => set(fixed2(v), (n) => (xbzrle(i).encodingRate = n)),
  "xbzrle overflow": (v, i) => set(uint(v), (n) => (xbzrle(i).overflow = n)),
  "compression pages": (v, i) => set(pages(v), (n) => (compression(i).pages = n)),
  "compression busy": (v, i) => set(uint(v), (n) => (compression(i).busy = n)),
  "compression busy rate": (v, i) => set(fixed2(v), (n) => (compression(i).busyRate = n)),
  "compressed size": (v, i) => set(kbytes(v), (b) => (compression(i).compressedSize = b)),
  "compression rate": (v, i) => set(fixed2(v), (n) => (compression(i).compressionRate = n)),
  "cpu throttle percentage": (v, i) => set(uint(v), (n) => (i.cpuThrottlePercentage = n)),
  "dirty-limit throttle time": (v, i) =>
    set(uintWithUnit(v, "us"), (n) => (i.dirtyLimitThrottleTimeUs = n)),
  "dirty-limit ring full time": (v, i) =>
    set(uintWithUnit(v, "us"), (n) => (i.dirtyLimitRingFullTimeUs = n)),
  "postcopy blocktime": (v, i) => set(uint(v), (n) => (i.postcopyBlocktimeMs = n)),
  "postcopy vcpu blocktime": (v, i) =>
    set(visitorUintList(v), (l) => (i.postcopyVcpuBlocktimeMs = l)),
  "vfio device transferred": (v, i) => set(kbytes(v), (b) => (i.vfioTransferred = b)),
};

function flatMbps(v: string, info: HmpMigrationInfo): boolean {
  const n = v.endsWith(" mbps") ? fixed2(v.slice(0, -" mbps".length)) : undefined;
  return set(n, (x) => (ram(info).mbps = x));
}

/** The string output visitor's uint list: "1,2,5" with runs collapsed to ranges ("1-3,5"). */
function visitorUintList(s: string): number[] | undefined {
  const out: number[] = [];
  for (const part of s.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m?.[1]) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) return undefined;
    for (let n = from; n <= to; n++) out.push(n);
  }
  return out;
}

/** A migration global: every one QEMU has printed is a switch or a number. */
const GLOBAL_LINE = /^([a-z][a-z0-9-]*): (on|off|\d+)$/;

function parseFlat(lines: string[], info: HmpMigrationInfo): void {
  const seen = new Set<string>();
  let block: "none" | "globals" | "blocked" | "sockets" = "none";
  for (const line of lines) {
    if (block === "sockets") {
      if (line === "]") block = "none";
      else if (/^\t\S+$/.test(line)) info.socketAddresses?.push(line.slice(1));
      else info.unknownLines.push(line);
      continue;
    }
    if (block === "blocked" && line.startsWith("  ")) {
      info.blockedReasons?.push(line.slice(2));
      continue;
    }
    if (block === "globals") {
      const g = GLOBAL_LINE.exec(line);
      if (g?.[1] && g[2] !== undefined && own(FLAT_LINES, g[1]) === undefined) {
        if (info.globals && Object.hasOwn(info.globals, g[1])) info.unknownLines.push(line);
        else if (info.globals) info.globals[g[1]] = g[2];
        continue;
      }
    }
    block = "none";
    if (line === "globals:" && !info.globals) {
      info.globals = {};
      block = "globals";
      continue;
    }
    if (line === "Outgoing migration blocked:" && !info.blockedReasons) {
      info.blockedReasons = [];
      block = "blocked";
      continue;
    }
    if (line === "socket address: [" && !info.socketAddresses) {
      info.socketAddresses = [];
      block = "sockets";
      continue;
    }
    const l = splitLabel(line);
    const read = l && l.indent === "" ? own(FLAT_LINES, l.label) : undefined;
    if (!l || !read || seen.has(l.label) || !read(l.value, info)) {
      info.unknownLines.push(line);
      continue;
    }
    seen.add(l.label);
  }
  if (block === "sockets") info.unknownLines.push("<missing ']' after socket address list>");
}

// ---------------------------------------------------------------- sectioned format (>= 10.1)

/** Top-level `Label: value` lines of the sectioned layout. */
const SECTIONED_LINES: Record<string, Reader> = {
  Status: (v, i) => statusValue(v, i),
  "Time (ms)": (v, i) =>
    readKeyValues(
      v,
      {
        total: (x) => set(uint(x), (n) => (i.totalTimeMs = n)),
        setup: (x) => set(uint(x), (n) => (i.setupTimeMs = n)),
        exp_down: (x) => set(uint(x), (n) => (i.expectedDowntimeMs = n)),
        down: (x) => set(uint(x), (n) => (i.downtimeMs = n)),
      },
      ["total"],
    ),
  Remaining: (v, i) => set(size(v), (b) => (i.remaining = b)),
  XBZRLE: (v, i) =>
    readKeyValues(
      v,
      {
        size: (x) => set(uint(x), (n) => (xbzrle(i).cacheSize = n)),
        transferred: (x) => set(uint(x), (n) => (xbzrle(i).transferred = exactBytes(n, x))),
        pages: (x) => set(uint(x), (n) => (xbzrle(i).pages = n)),
        miss: (x) => set(uint(x), (n) => (xbzrle(i).cacheMiss = n)),
      },
      ["size", "transferred", "pages", "miss"],
    ),
  "CPU Throttle (%)": (v, i) => set(uint(v), (n) => (i.cpuThrottlePercentage = n)),
  "Dirty-limit Throttle (us)": (v, i) => set(uint(v), (n) => (i.dirtyLimitThrottleTimeUs = n)),
  "Dirty-limit Ring Full (us)": (v, i) => set(uint(v), (n) => (i.dirtyLimitRingFullTimeUs = n)),
  "Postcopy Blocktime (ms)": (v, i) => set(uint(v), (n) => (i.postcopyBlocktimeMs = n)),
};

/** `RAM info:` sub-lines, keyed by label without indentation. */
const RAM_LINES: Record<string, Reader> = {
  "Throughput (Mbps)": (v, i) => set(fixed2(v), (n) => (ram(i).mbps = n)),
  Sizes: (v, i) =>
    readKeyValues(
      v,
      {
        pagesize: (x) => set(size(x), (b) => (ram(i).pageSize = b)),
        total: (x) => set(size(x), (b) => (ram(i).total = b)),
      },
      ["pagesize", "total"],
    ),
  Transfers: (v, i) =>
    readKeyValues(
      v,
      {
        transferred: (x) => set(size(x), (b) => (ram(i).transferred = b)),
        remain: (x) => set(size(x), (b) => (ram(i).remaining = b)),
      },
      ["transferred", "remain"],
    ),
  Channels: (v, i) =>
    readKeyValues(
      v,
      {
        precopy: (x) => set(size(x), (b) => (ram(i).precopyBytes = b)),
        multifd: (x) => set(size(x), (b) => (ram(i).multifdBytes = b)),
        postcopy: (x) => set(size(x), (b) => (ram(i).postcopyBytes = b)),
        vfio: (x) => set(size(x), (b) => (i.vfioTransferred = b)),
      },
      ["precopy", "multifd", "postcopy"],
    ),
  "Page Types": (v, i) =>
    readKeyValues(
      v,
      {
        normal: (x) => set(uint(x), (n) => (ram(i).normalPages = n)),
        zero: (x) => set(uint(x), (n) => (ram(i).duplicatePages = n)),
      },
      ["normal", "zero"],
    ),
  "Page Rates (pps)": (v, i) =>
    readKeyValues(
      v,
      {
        transfer: (x) => set(uint(x), (n) => (ram(i).pagesPerSecond = n)),
        dirty: (x) => set(uint(x), (n) => (ram(i).dirtyPagesRate = n)),
      },
      ["transfer"],
    ),
  Others: (v, i) =>
    readKeyValues(
      v,
      {
        dirty_syncs: (x) => set(uint(x), (n) => (ram(i).dirtySyncCount = n)),
        postcopy_req: (x) => set(uint(x), (n) => (ram(i).postcopyRequests = n)),
        downtime_bytes: (x) => set(uint(x), (n) => (ram(i).downtimeBytes = n)),
        zerocopy_fallbacks: (x) => set(uint(x), (n) => (ram(i).zeroCopyFallbacks = n)),
      },
      ["dirty_syncs"],
    ),
};

/** Headers of multi-line lists: `Label:` then ` [a, b, ...]` wrapped over lines. */
const SECTIONED_LISTS: Record<string, (values: number[], info: HmpMigrationInfo) => void> = {
  "Postcopy vCPU Blocktime (ms)": (l, i) => {
    i.postcopyVcpuBlocktimeMs = l;
  },
  "Postcopy vCPU Latencies": (l, i) => {
    i.postcopyVcpuLatency = l;
  },
};

/** `Postcopy Latency (ns): N` style lines; QEMU has printed both (us) and (ns). */
const LATENCY_LINE = /^(Postcopy Latency|Postcopy non-vCPU Latencies) \((ns|us)\)$/;
const LATENCY_LIST = /^(Postcopy vCPU Latencies) \((ns|us)\)$/;

function parseSectioned(lines: string[], info: HmpMigrationInfo): void {
  const seen = new Set<string>();
  type Block =
    | { kind: "none" | "blocked" | "sockets" | "ram" | "globals" | "xbzrle" | "latencyDist" }
    | { kind: "list"; label: string; values: number[]; started: boolean; open: boolean };
  let block = { kind: "none" } as Block;

  const finishList = (): void => {
    if (block.kind !== "list") return;
    if (block.open) info.unknownLines.push(`<unterminated list after "${block.label}:">`);
    else listSink(block.label)?.(block.values, info);
  };

  for (const line of lines) {
    switch (block.kind) {
      case "blocked":
        if (line.startsWith("  ")) {
          info.blockedReasons?.push(line.slice(2));
          continue;
        }
        break;
      case "sockets":
        if (line === "]") block = { kind: "none" };
        else if (/^\t\S+$/.test(line)) info.socketAddresses?.push(line.slice(1));
        else info.unknownLines.push(line);
        continue;
      case "ram": {
        const l = splitLabel(line);
        if (l && l.indent !== "") {
          const read = own(RAM_LINES, l.label);
          const key = `ram:${l.label}`;
          if (!read || seen.has(key) || !read(l.value, info)) info.unknownLines.push(line);
          seen.add(key);
          continue;
        }
        break;
      }
      case "globals": {
        const g = line.startsWith("  ") ? GLOBAL_LINE.exec(line.slice(2)) : null;
        if (g?.[1] && g[2] !== undefined) {
          if (info.globals && Object.hasOwn(info.globals, g[1])) info.unknownLines.push(line);
          else if (info.globals) info.globals[g[1]] = g[2];
          continue;
        }
        break;
      }
      case "xbzrle":
        // The second XBZRLE line, printed right after the first.
        block = { kind: "none" };
        if (line.startsWith("  ") && !line.startsWith("   ")) {
          const ok = readKeyValues(
            line.slice(2),
            {
              miss_rate: (x) => set(fixed2(x), (n) => (xbzrle(info).cacheMissRate = n)),
              encode_rate: (x) => set(fixed2(x), (n) => (xbzrle(info).encodingRate = n)),
              overflow: (x) => set(uint(x), (n) => (xbzrle(info).overflow = n)),
            },
            ["miss_rate", "encode_rate", "overflow"],
          );
          if (!ok) info.unknownLines.push(line);
          continue;
        }
        info.unknownLines.push("<missing second XBZRLE line>");
        break;
      case "list": {
        // " [a, b, ..." first, then "  c, d, ..." every ten values, the last one ending in "]".
        const m = (block.started ? /^ {2}(\S.*)$/ : /^ \[(.*)$/).exec(line);
        if (block.open && m?.[1] !== undefined) {
          block.started = true;
          let body = m[1];
          const closes = body.endsWith("]");
          if (closes) body = body.slice(0, -1);
          else if (body.endsWith(",")) body = body.slice(0, -1);
          else {
            info.unknownLines.push(line);
            block.open = false;
            continue;
          }
          const values = body === "" ? [] : body.split(", ").map((x) => uint(x));
          if (values.some((x) => x === undefined)) info.unknownLines.push(line);
          else block.values.push(...(values as number[]));
          if (closes) block.open = false;
          continue;
        }
        finishList();
        block = { kind: "none" };
        break;
      }
      case "latencyDist": {
        const m = /^ {2}\[ +(\S+ \S+) - +(\S+ \S+) \]: +(\d+)$/.exec(line);
        if (m?.[1] && m[2] && m[3]) {
          info.postcopyLatencyDistribution?.push({
            from: m[1],
            to: m[2],
            count: Number(m[3]),
          });
          continue;
        }
        break;
      }
      case "none":
        break;
    }
    block = { kind: "none" };
    parseSectionedTopLine(line);
  }
  finishList();
  if (block.kind === "sockets") info.unknownLines.push("<missing ']' after Sockets list>");
  if (block.kind === "xbzrle") info.unknownLines.push("<missing second XBZRLE line>");
  info.showsAll = info.globals !== undefined;

  function parseSectionedTopLine(line: string): void {
    const once = (key: string): boolean => {
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    };
    if (line === "Outgoing migration blocked:" && once(line)) {
      info.blockedReasons = [];
      block = { kind: "blocked" };
      return;
    }
    if (/^Sockets:[ \t]+\[$/.test(line) && once("Sockets")) {
      info.socketAddresses = [];
      block = { kind: "sockets" };
      return;
    }
    if (line === "RAM info:" && once(line)) {
      info.ram ??= {};
      block = { kind: "ram" };
      return;
    }
    if (line === "Globals:" && once(line)) {
      info.globals = {};
      block = { kind: "globals" };
      return;
    }
    if (line === "Postcopy Latency Distribution:" && once(line)) {
      info.postcopyLatencyDistribution = [];
      block = { kind: "latencyDist" };
      return;
    }
    const l = splitLabel(line);
    if (l && l.indent === "" && l.value === "") {
      const listLabel = listKey(l.label, info);
      if (listLabel && once(l.label)) {
        block = { kind: "list", label: listLabel, values: [], started: false, open: true };
        return;
      }
    }
    if (l && l.indent === "") {
      const lat = LATENCY_LINE.exec(l.label);
      if (lat?.[1] && lat[2] && uint(l.value) !== undefined && once(l.label)) {
        if (!setLatencyUnit(info, lat[2])) info.unknownLines.push(line);
        else if (lat[1] === "Postcopy Latency") info.postcopyLatency = Number(l.value);
        else info.postcopyNonVcpuLatency = Number(l.value);
        return;
      }
      const read = own(SECTIONED_LINES, l.label);
      if (read && once(l.label) && read(l.value, info)) {
        if (l.label === "XBZRLE") block = { kind: "xbzrle" };
        return;
      }
    }
    info.unknownLines.push(line);
  }
}

/** The list a `Label:` header starts, or undefined; records the latency unit on the way. */
function listKey(label: string, info: HmpMigrationInfo): string | undefined {
  if (own(SECTIONED_LISTS, label)) return label;
  const lat = LATENCY_LIST.exec(label);
  if (lat?.[1] && lat[2] && setLatencyUnit(info, lat[2])) return lat[1];
  return undefined;
}

function listSink(label: string): ((values: number[], info: HmpMigrationInfo) => void) | undefined {
  return own(SECTIONED_LISTS, label);
}

function setLatencyUnit(info: HmpMigrationInfo, unit: string): boolean {
  if (info.postcopyLatencyUnit !== undefined && info.postcopyLatencyUnit !== unit) return false;
  info.postcopyLatencyUnit = unit;
  return true;
}

// ---------------------------------------------------------------- cross-check with query-migrate

export interface CompareOptions {
  /**
   * The HMP and QMP snapshots were taken at different moments of a running migration: counters
   * that move (bytes, pages, rates, times) are only checked for presence, not value.
   */
  live?: boolean;
}

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
  const flat = hmp.format === "flat";
  const sectioned = hmp.format !== "flat";
  const fmt = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : String(v));

  // status and error
  if (hmp.status !== qmp.status) {
    out.push(
      `status: HMP ${hmp.status === undefined ? "shows no status" : fmt(hmp.status)} but QMP ${qmp.status === undefined ? "has no status" : fmt(qmp.status)}`,
    );
  }
  const errorShown =
    qmp["error-desc"] !== undefined &&
    (qmp.status === "failed" || (sectioned && qmp.status === "postcopy-paused"));
  checkValue(
    out,
    "error-desc",
    hmp.errorDesc,
    errorShown ? qmp["error-desc"] : undefined,
    errorShown,
    false,
  );

  // times: flat prints total time whenever there is a status (0 when QMP has none);
  // sectioned prints the Time line only when total-time is non-zero, with the rest inside it.
  const qTotal = qmp["total-time"] ?? 0;
  const timeLineShown = flat ? qmp.status !== undefined : qTotal !== 0;
  checkValue(out, "total-time", hmp.totalTimeMs, qTotal, timeLineShown, live);
  const timeMembers: [string, number | undefined, boolean][] = [
    ["setup-time", hmp.setupTimeMs, false],
    ["expected-downtime", hmp.expectedDowntimeMs, true],
    ["downtime", hmp.downtimeMs, false],
  ];
  for (const [member, h, moving] of timeMembers) {
    const q = qmp[member] as number | undefined;
    const shown = q !== undefined && (flat ? qmp.status !== undefined : timeLineShown);
    checkValue(out, member, h, q, shown, live && moving);
  }

  checkBytes(out, "remaining", hmp.remaining, qmp.remaining, qmp.remaining !== undefined, live);

  // RAM
  const qr = qmp.ram;
  if ((hmp.ram === undefined) !== (qr === undefined)) {
    out.push(
      qr
        ? "ram: QMP has ram statistics but HMP shows no RAM lines"
        : "ram: HMP shows RAM lines but QMP has no ram member",
    );
  } else if (hmp.ram && qr) {
    const h = hmp.ram;
    const nz = (member: keyof typeof qr) => ((qr[member] as number | undefined) ?? 0) !== 0;
    // shown: whether QEMU prints the value given this QMP reply. conditional: the line appears
    // only while a moving value is non-zero, so live snapshots may disagree on its presence.
    const rows: {
      member: keyof typeof qr;
      hmp: ApproxBytes | number | undefined;
      shown: boolean;
      conditional: boolean;
      moving: boolean;
    }[] = [
      { member: "transferred", hmp: h.transferred, shown: true, conditional: false, moving: true },
      { member: "remaining", hmp: h.remaining, shown: true, conditional: false, moving: true },
      { member: "total", hmp: h.total, shown: true, conditional: false, moving: false },
      { member: "page-size", hmp: h.pageSize, shown: true, conditional: false, moving: false },
      { member: "normal-bytes", hmp: h.normalBytes, shown: flat, conditional: false, moving: true },
      {
        member: "multifd-bytes",
        hmp: h.multifdBytes,
        shown: true,
        conditional: false,
        moving: true,
      },
      {
        member: "precopy-bytes",
        hmp: h.precopyBytes,
        shown: sectioned || nz("precopy-bytes"),
        conditional: flat,
        moving: true,
      },
      {
        member: "postcopy-bytes",
        hmp: h.postcopyBytes,
        shown: sectioned || nz("postcopy-bytes"),
        conditional: flat,
        moving: true,
      },
      {
        member: "downtime-bytes",
        hmp: h.downtimeBytes,
        shown: nz("downtime-bytes"),
        conditional: true,
        moving: true,
      },
      { member: "duplicate", hmp: h.duplicatePages, shown: true, conditional: false, moving: true },
      { member: "normal", hmp: h.normalPages, shown: true, conditional: false, moving: true },
      {
        member: "skipped",
        hmp: h.skippedPages,
        shown: flat && qr.skipped !== undefined,
        conditional: false,
        moving: false,
      },
      {
        member: "dirty-sync-count",
        hmp: h.dirtySyncCount,
        shown: true,
        conditional: false,
        moving: true,
      },
      {
        member: "pages-per-second",
        hmp: h.pagesPerSecond,
        shown: true,
        conditional: false,
        moving: true,
      },
      {
        member: "dirty-pages-rate",
        hmp: h.dirtyPagesRate,
        shown: nz("dirty-pages-rate"),
        conditional: true,
        moving: true,
      },
      {
        member: "postcopy-requests",
        hmp: h.postcopyRequests,
        shown: nz("postcopy-requests"),
        conditional: true,
        moving: true,
      },
      {
        member: "dirty-sync-missed-zero-copy",
        hmp: h.zeroCopyFallbacks,
        shown: nz("dirty-sync-missed-zero-copy"),
        conditional: true,
        moving: true,
      },
    ];
    for (const row of rows) {
      const moving = live && row.moving;
      if (moving && row.conditional && (row.hmp === undefined) === row.shown) continue;
      const q = qr[row.member] as number | undefined;
      const field = `ram.${row.member}`;
      if (typeof row.hmp === "object") checkBytes(out, field, row.hmp, q, row.shown, moving);
      else checkValue(out, field, row.hmp, q, row.shown, moving);
    }
    if (h.mbps !== undefined && !live && Math.abs(h.mbps - qr.mbps) > 0.005 + 1e-9) {
      out.push(`ram.mbps: HMP ${h.mbps.toFixed(2)} but QMP ${qr.mbps}`);
    }
  }

  // vfio: flat has its own line; sectioned adds vfio= to the Channels line, so needs ram.
  const vfioShown = qmp.vfio !== undefined && (flat || qr !== undefined);
  checkBytes(out, "vfio.transferred", hmp.vfioTransferred, qmp.vfio?.transferred, vfioShown, live);

  // lists
  const qBlocked = qmp["blocked-reasons"];
  if (JSON.stringify(hmp.blockedReasons ?? null) !== JSON.stringify(qBlocked ?? null)) {
    out.push(
      `blocked-reasons: HMP ${fmt(JSON.stringify(hmp.blockedReasons ?? null))} but QMP ${JSON.stringify(qBlocked ?? null)}`,
    );
  }
  const qSockets = qmp["socket-address"]?.map(socketUri);
  if (JSON.stringify(hmp.socketAddresses ?? null) !== JSON.stringify(qSockets ?? null)) {
    out.push(
      `socket-address: HMP ${JSON.stringify(hmp.socketAddresses ?? null)} but QMP ${JSON.stringify(qSockets ?? null)}`,
    );
  }

  // Lines the sectioned layout prints only with `-a`.
  const extrasShown = flat || hmp.showsAll === true;
  if (extrasShown) {
    const xq = qmp["xbzrle-cache"];
    if ((hmp.xbzrle === undefined) !== (xq === undefined)) {
      out.push(
        xq
          ? "xbzrle-cache: QMP has it but HMP shows no XBZRLE lines"
          : "xbzrle-cache: HMP shows XBZRLE lines but QMP has none",
      );
    } else if (hmp.xbzrle && xq) {
      const x = hmp.xbzrle;
      checkValue(out, "xbzrle-cache.cache-size", x.cacheSize, xq["cache-size"], true, false);
      checkBytes(out, "xbzrle-cache.bytes", x.transferred, xq.bytes, true, live);
      checkValue(out, "xbzrle-cache.pages", x.pages, xq.pages, true, live);
      checkValue(out, "xbzrle-cache.cache-miss", x.cacheMiss, xq["cache-miss"], true, live);
      checkValue(out, "xbzrle-cache.overflow", x.overflow, xq.overflow, true, live);
    }
    const singles: [string, number | undefined][] = [
      ["cpu-throttle-percentage", hmp.cpuThrottlePercentage],
      ["dirty-limit-throttle-time-per-round", hmp.dirtyLimitThrottleTimeUs],
      ["dirty-limit-ring-full-time", hmp.dirtyLimitRingFullTimeUs],
      ["postcopy-blocktime", hmp.postcopyBlocktimeMs],
    ];
    for (const [member, hv] of singles) {
      const q = qmp[member] as number | undefined;
      checkValue(out, member, hv, q, q !== undefined, live);
    }
    const qv = qmp["postcopy-vcpu-blocktime"];
    if (JSON.stringify(hmp.postcopyVcpuBlocktimeMs ?? null) !== JSON.stringify(qv ?? null)) {
      out.push(
        `postcopy-vcpu-blocktime: HMP ${JSON.stringify(hmp.postcopyVcpuBlocktimeMs ?? null)} but QMP ${JSON.stringify(qv ?? null)}`,
      );
    }
  }
  return out;
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
