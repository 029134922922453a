// The flat `info migrate` layout (QEMU <= 10.0): a `globals:` block, then `Migration status: ...`,
// `transferred ram: N kbytes`... one `label: value` line per member.

import {
  fixed2,
  GLOBAL_LINE,
  kbytes,
  own,
  type Reader,
  ram,
  set,
  splitLabel,
  statusValue,
  uint,
  uintWithUnit,
  xbzrle,
} from "./line-grammar.ts";
import type { HmpCompressionInfo, HmpDiskInfo, HmpMigrationInfo } from "./migration-info.ts";

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

/** The flat layout: `label: value` lines, a `globals:` block and two lists. */
export function parseFlat(lines: string[], info: HmpMigrationInfo): void {
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
