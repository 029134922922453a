// The sectioned `info migrate` layout (QEMU >= 10.1): `Status:\t\t...`, `Time (ms):\t\ttotal=...`,
// a `RAM info:` block of indented sub-lines, sizes from size_to_str(); `Globals:` and the rest
// only with `info migrate -a`. A block runs until a line that is not one of its own.

import {
  fixed2,
  GLOBAL_LINE,
  own,
  type Reader,
  ram,
  readKeyValues,
  set,
  size,
  splitLabel,
  statusValue,
  uint,
  xbzrle,
} from "./line-grammar.ts";
import type { HmpMigrationInfo } from "./migration-info.ts";
import { exactBytes } from "./size.ts";

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

/** A list being read: ` [a, b, ...` on the header's next line, continued every ten values. */
interface ListBlock {
  kind: "list";
  label: string;
  values: number[];
  started: boolean;
  open: boolean;
}

type Block =
  | { kind: "none" | "blocked" | "sockets" | "ram" | "globals" | "xbzrle" | "latencyDist" }
  | ListBlock;

interface Parse {
  info: HmpMigrationInfo;
  /** Labels and headers already read: a repeated one is an unknown line. */
  seen: Set<string>;
  block: Block;
}

/** Each block's lines; false when `line` is not the block's, which ends it. */
const BLOCK_LINES: Record<Block["kind"], (line: string, p: Parse) => boolean> = {
  none: () => false,
  blocked: (line, { info }) => {
    if (!line.startsWith("  ")) return false;
    info.blockedReasons?.push(line.slice(2));
    return true;
  },
  sockets: (line, p) => {
    if (line === "]") p.block = { kind: "none" };
    else if (/^\t\S+$/.test(line)) p.info.socketAddresses?.push(line.slice(1));
    else p.info.unknownLines.push(line);
    return true;
  },
  ram: (line, { info, seen }) => {
    const l = splitLabel(line);
    if (!l || l.indent === "") return false;
    const read = own(RAM_LINES, l.label);
    const key = `ram:${l.label}`;
    if (!read || seen.has(key) || !read(l.value, info)) info.unknownLines.push(line);
    seen.add(key);
    return true;
  },
  globals: (line, { info }) => {
    const g = line.startsWith("  ") ? GLOBAL_LINE.exec(line.slice(2)) : null;
    if (!g?.[1] || g[2] === undefined) return false;
    if (info.globals && Object.hasOwn(info.globals, g[1])) info.unknownLines.push(line);
    else if (info.globals) info.globals[g[1]] = g[2];
    return true;
  },
  xbzrle: (line, p) => {
    // The second XBZRLE line, printed right after the first.
    p.block = { kind: "none" };
    const { info } = p;
    if (!line.startsWith("  ") || line.startsWith("   ")) {
      info.unknownLines.push("<missing second XBZRLE line>");
      return false;
    }
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
    return true;
  },
  list: (line, p) => {
    const block = p.block as ListBlock;
    // " [a, b, ..." first, then "  c, d, ..." every ten values, the last one ending in "]".
    const m = (block.started ? /^ {2}(\S.*)$/ : /^ \[(.*)$/).exec(line);
    if (!block.open || m?.[1] === undefined) {
      finishList(p);
      return false;
    }
    block.started = true;
    let body = m[1];
    const closes = body.endsWith("]");
    if (closes || body.endsWith(",")) body = body.slice(0, -1);
    else {
      p.info.unknownLines.push(line);
      block.open = false;
      return true;
    }
    const values = body === "" ? [] : body.split(", ").map((x) => uint(x));
    if (values.some((x) => x === undefined)) p.info.unknownLines.push(line);
    else block.values.push(...(values as number[]));
    if (closes) block.open = false;
    return true;
  },
  latencyDist: (line, { info }) => {
    const m = /^ {2}\[ +(\S+ \S+) - +(\S+ \S+) \]: +(\d+)$/.exec(line);
    if (!m?.[1] || !m[2] || !m[3]) return false;
    info.postcopyLatencyDistribution?.push({ from: m[1], to: m[2], count: Number(m[3]) });
    return true;
  },
};

/** The sectioned layout, `info migrate` or `info migrate -a`. */
export function parseSectioned(lines: string[], info: HmpMigrationInfo): void {
  const p: Parse = { info, seen: new Set(), block: { kind: "none" } };
  for (const line of lines) {
    if (BLOCK_LINES[p.block.kind](line, p)) continue;
    p.block = { kind: "none" };
    if (!startsBlock(line, p) && !readTopLine(line, p)) info.unknownLines.push(line);
  }
  finishList(p);
  if (p.block.kind === "sockets") info.unknownLines.push("<missing ']' after Sockets list>");
  if (p.block.kind === "xbzrle") info.unknownLines.push("<missing second XBZRLE line>");
  info.showsAll = info.globals !== undefined;
}

/** Header lines of blocks: the key they count as seen under, and what they start. */
const BLOCK_HEADERS: {
  matches: (line: string) => boolean;
  key: string;
  start: (info: HmpMigrationInfo) => Exclude<Block["kind"], "list">;
}[] = [
  {
    matches: (l) => l === "Outgoing migration blocked:",
    key: "Outgoing migration blocked:",
    start: (info) => {
      info.blockedReasons = [];
      return "blocked";
    },
  },
  {
    matches: (l) => /^Sockets:[ \t]+\[$/.test(l),
    key: "Sockets",
    start: (info) => {
      info.socketAddresses = [];
      return "sockets";
    },
  },
  {
    matches: (l) => l === "RAM info:",
    key: "RAM info:",
    start: (info) => {
      info.ram ??= {};
      return "ram";
    },
  },
  {
    matches: (l) => l === "Globals:",
    key: "Globals:",
    start: (info) => {
      info.globals = {};
      return "globals";
    },
  },
  {
    matches: (l) => l === "Postcopy Latency Distribution:",
    key: "Postcopy Latency Distribution:",
    start: (info) => {
      info.postcopyLatencyDistribution = [];
      return "latencyDist";
    },
  },
];

function once(p: Parse, key: string): boolean {
  if (p.seen.has(key)) return false;
  p.seen.add(key);
  return true;
}

/** A block header (the first time it appears): starts that block. */
function startsBlock(line: string, p: Parse): boolean {
  const header = BLOCK_HEADERS.find((h) => h.matches(line));
  if (!header || !once(p, header.key)) return false;
  p.block = { kind: header.start(p.info) };
  return true;
}

/** A top-level `Label: value` line, a latency line, or the header of a list. */
function readTopLine(line: string, p: Parse): boolean {
  const { info } = p;
  const l = splitLabel(line);
  if (l?.indent !== "") return false;
  if (l.value === "") {
    const listLabel = listKey(l.label, info);
    if (listLabel && once(p, l.label)) {
      p.block = { kind: "list", label: listLabel, values: [], started: false, open: true };
      return true;
    }
  }
  const lat = LATENCY_LINE.exec(l.label);
  if (lat?.[1] && lat[2] && uint(l.value) !== undefined && once(p, l.label)) {
    if (!setLatencyUnit(info, lat[2])) info.unknownLines.push(line);
    else if (lat[1] === "Postcopy Latency") info.postcopyLatency = Number(l.value);
    else info.postcopyNonVcpuLatency = Number(l.value);
    return true;
  }
  const read = own(SECTIONED_LINES, l.label);
  if (read && once(p, l.label) && read(l.value, info)) {
    if (l.label === "XBZRLE") p.block = { kind: "xbzrle" };
    return true;
  }
  return false;
}

/** A finished list goes to its member; one still open at the end is an unknown line. */
function finishList(p: Parse): void {
  const block = p.block;
  if (block.kind !== "list") return;
  if (block.open) p.info.unknownLines.push(`<unterminated list after "${block.label}:">`);
  else own(SECTIONED_LISTS, block.label)?.(block.values, p.info);
}

/** The list a `Label:` header starts, or undefined; records the latency unit on the way. */
function listKey(label: string, info: HmpMigrationInfo): string | undefined {
  if (own(SECTIONED_LISTS, label)) return label;
  const lat = LATENCY_LIST.exec(label);
  if (lat?.[1] && lat[2] && setLatencyUnit(info, lat[2])) return lat[1];
  return undefined;
}

function setLatencyUnit(info: HmpMigrationInfo, unit: string): boolean {
  if (info.postcopyLatencyUnit !== undefined && info.postcopyLatencyUnit !== unit) return false;
  info.postcopyLatencyUnit = unit;
  return true;
}
