// Figures that must hang together in any MigrationInfo, whatever the feature: a patch that
// miscounts the same way on QMP and HMP passes every cross-check, only these catch it. Each rule
// is derived from the QEMU code that fills the members (migration/migration.c populate_ram_info,
// fill_source_migration_info, migration_calculate_complete; migration/ram.c); the suites'
// fixture runs them on every recorded query-migrate reply of every pair.

import type { Side, Timeline } from "../migration/timeline.ts";
import type { MigrationInfo, MigrationStats } from "../qmp/qapi.ts";
import {
  type KnownQemuBug,
  knownQemuBug,
  monotonicNowMs,
  type QemuVersion,
} from "./known-qemu-bugs.ts";

/** Statuses in which the first dirty-bitmap sync (ram_save_setup) has happened. */
const SYNCED = ["active", "device", "pre-switchover", "completed", "postcopy-active"];

/** Statuses in which the migration thread moves the counters while query-migrate reads them. */
const RUNNING = ["active", "device", "postcopy-active"];

/**
 * At most MAX_IOV_SIZE (64) queued pages and IO_BUF_SIZE (32768) bytes sit in a QEMUFile
 * (qemu-file.c). Seen: 127030 bytes short while active on 10.0 and 11.1. After a precopy
 * completed everything is flushed; after a postcopy recovery what sat in the broken channel's
 * buffer was counted but never sent (measured 104395 bytes short at completion on 11.1).
 */
function queuedBytes(status: string | undefined, ram: MigrationStats): number {
  const flushed = status === "completed" && (ram["postcopy-bytes"] ?? 0) === 0;
  return flushed ? 0 : 64 * ram["page-size"] + 32768;
}

/** `transferred` (read at one moment) against the byte counters of `counted` (read no later). */
function transferredShortfall(
  transferred: number,
  status: string | undefined,
  ram: MigrationStats,
  counted: MigrationStats,
): string | undefined {
  const parts =
    (counted["precopy-bytes"] ?? 0) +
    (counted["downtime-bytes"] ?? 0) +
    (counted["postcopy-bytes"] ?? 0);
  const buffered = queuedBytes(status, ram);
  return transferred + buffered < parts
    ? `ram.transferred ${transferred} is less than precopy + downtime + postcopy bytes ${parts}${buffered ? ` by more than the ${buffered} bytes a QEMUFile buffers` : ""}`
    : undefined;
}

/** One rule over one reply: a problem text, or undefined when the reply keeps it. */
export interface ReplyRule {
  name: string;
  /** Only the source's replies (the destination's figures, where patched in, mean other things). */
  sourceOnly?: boolean;
  check(info: MigrationInfo): string | undefined;
}

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

export const REPLY_RULES: readonly ReplyRule[] = [
  {
    // populate_ram_info: normal_bytes = normal * page_size.
    name: "normal-bytes = normal x page-size",
    check: ({ ram }) =>
      ram && ram["normal-bytes"] !== ram.normal * ram["page-size"]
        ? `ram.normal-bytes ${ram["normal-bytes"]} is not ram.normal ${ram.normal} x ram.page-size ${ram["page-size"]}`
        : undefined,
  },
  {
    // qemu_target_page_size(): a power of two.
    name: "page-size is a power of two",
    check: ({ ram }) =>
      ram && !isPowerOfTwo(ram["page-size"])
        ? `ram.page-size ${ram["page-size"]} is not a power of two`
        : undefined,
  },
  {
    // remaining = dirty pages x page size; total = every migratable page: a subset.
    name: "remaining <= total",
    check: ({ ram }) =>
      ram && ram.remaining > ram.total
        ? `ram.remaining ${ram.remaining} exceeds ram.total ${ram.total}`
        : undefined,
  },
  {
    // ram_transferred_add() adds every main-channel RAM byte to precopy-, downtime- or
    // postcopy-bytes when it is queued; the transferred total (10.x on: the QEMUFile's bytes
    // as flushed, plus multifd's) lags by what sits in the QEMUFile's buffer (queuedBytes).
    // Judged here only where the counters no longer move; a running migration's replies are
    // judged against the previous reply in seriesProblems (populate_ram_info reads transferred
    // first and the byte counters after, unlocked, so one reply is not a snapshot).
    name: "transferred >= precopy + downtime + postcopy bytes",
    check: ({ status, ram }) => {
      if (!ram || RUNNING.includes(status ?? "")) return undefined;
      return transferredShortfall(ram.transferred, status, ram, ram);
    },
  },
  {
    // The first sync is part of ram_save_setup, before the status turns active.
    name: "dirty-sync-count >= 1 once active",
    sourceOnly: true,
    check: ({ status, ram }) =>
      ram && SYNCED.includes(status ?? "") && (ram["dirty-sync-count"] ?? 1) < 1
        ? `ram.dirty-sync-count ${ram["dirty-sync-count"]} in status ${status}: the first sync is done in setup`
        : undefined,
  },
  {
    // setup-time is read on QEMU_CLOCK_HOST (migration_thread), total-time on
    // QEMU_CLOCK_REALTIME from an earlier start: each whole ms, so setup may exceed it by 1 ms
    // (seen: setup 2, total 1 on a file migration of 10.0).
    name: "setup-time <= total-time",
    sourceOnly: true,
    check: (i) =>
      i["setup-time"] !== undefined &&
      i["total-time"] !== undefined &&
      i["total-time"] > 0 &&
      i["setup-time"] > i["total-time"] + 1
        ? `setup-time ${i["setup-time"]} ms exceeds total-time ${i["total-time"]} ms`
        : undefined,
  },
  {
    name: "downtime <= total-time",
    sourceOnly: true,
    check: (i) =>
      i.downtime !== undefined &&
      i["total-time"] !== undefined &&
      i["total-time"] > 0 &&
      i.downtime > i["total-time"]
        ? `downtime ${i.downtime} ms exceeds total-time ${i["total-time"]} ms`
        : undefined,
  },
  {
    // Completed: nothing dirty left (the last sync happened with the VM stopped).
    name: "remaining = 0 once completed",
    sourceOnly: true,
    check: ({ status, ram }) =>
      status === "completed" && ram && ram.remaining !== 0
        ? `ram.remaining ${ram.remaining} after completion`
        : undefined,
  },
  {
    // The bulk stage sends every page once, as a normal or a zero page (xbzrle and multifd
    // compression only start on later passes or count their pages as normal).
    name: "every page sent at least once by completion",
    sourceOnly: true,
    check: (i) => {
      const ram = i.ram;
      if (i.status !== "completed" || !ram || "compression" in i) return undefined;
      const pages = ram.total / ram["page-size"];
      return ram.normal + ram.duplicate < pages
        ? `ram.normal ${ram.normal} + ram.duplicate ${ram.duplicate} pages is less than the ${pages} pages of ram.total`
        : undefined;
    },
  },
  {
    // migration_calculate_complete(): mbps = bytes * 8 / (total-time - setup-time) / 1000, with
    // bytes migration_transferred_bytes() (10.x on: ram.transferred itself; 7.2: the stream's
    // position plus multifd, so the device state too). The times are whole ms: off by 1 ms of
    // transfer time either way. Real runs: stream / transferred 1.0000 (10.0, 11.1), 1.0004 (7.2).
    name: "mbps at completion from transferred and the transfer time",
    sourceOnly: true,
    check: (i) => {
      const ram = i.ram;
      const total = i["total-time"] ?? 0;
      const transferMs = total - (i["setup-time"] ?? 0);
      // Precopy only: after a postcopy (and its recoveries) the two no longer match (measured
      // 0.944 after a migrate-pause recovery).
      if (i.status !== "completed" || !ram || transferMs < 20 || ram.mbps === 0) return undefined;
      if ((ram["postcopy-bytes"] ?? 0) > 0) return undefined;
      const streamBytes = (ram.mbps * 1000 * transferMs) / 8;
      const low = ram.transferred * (1 - 1 / transferMs) * 0.99;
      const high = ram.transferred * (1 + 1 / transferMs) * 1.05 + 2 * 1024 * 1024;
      return streamBytes < low || streamBytes > high
        ? `ram.mbps ${ram.mbps} over ${transferMs} ms of transfer stands for ${Math.round(streamBytes)} bytes, but ram.transferred is ${ram.transferred}`
        : undefined;
    },
  },
  {
    // ram.c migration_update_rates: misses / lookups of the period.
    name: "xbzrle cache-miss-rate is a fraction",
    check: (i) => {
      const x = i["xbzrle-cache"];
      return x && (x["cache-miss-rate"] < 0 || x["cache-miss-rate"] > 1)
        ? `xbzrle-cache.cache-miss-rate ${x["cache-miss-rate"]} is not in [0, 1]`
        : undefined;
    },
  },
  {
    // save_xbzrle_page(): an encoding is kept only when shorter than a page, plus its header.
    name: "xbzrle bytes <= pages x (page-size + header)",
    check: (i) => {
      const x = i["xbzrle-cache"];
      const page = i.ram?.["page-size"] ?? 4096;
      return x && x.bytes > x.pages * (page + 300)
        ? `xbzrle-cache.bytes ${x.bytes} for ${x.pages} pages is more than a page each`
        : undefined;
    },
  },
  {
    // Reported only while throttling (cpu_throttle_active), capped by max-cpu-throttle <= 99.
    name: "cpu-throttle-percentage in 1..99",
    check: (i) => {
      const p = i["cpu-throttle-percentage"];
      return p !== undefined && (p < 1 || p > 99)
        ? `cpu-throttle-percentage ${p} outside 1..99`
        : undefined;
    },
  },
];

/** A broken rule on one reply. */
interface RuleBreak {
  rule: string;
  text: string;
}

function replyBreaks(info: MigrationInfo, side: Side): RuleBreak[] {
  const out: RuleBreak[] = [];
  for (const rule of REPLY_RULES) {
    if (rule.sourceOnly && side !== "source") continue;
    const problem = rule.check(info);
    if (problem) out.push({ rule: rule.name, text: `${rule.name}: ${problem}` });
  }
  return out;
}

/** Every rule `info` breaks, one text each. */
export function replyProblems(info: MigrationInfo, side: Side): string[] {
  return replyBreaks(info, side).map((b) => b.text);
}

/** A reply with the time it was read (ms on the timeline) and, when known, when it was asked. */
export interface TimedReply {
  t: number;
  sentT?: number;
  data: MigrationInfo;
}

/** Slack of total-time against the host's clock between two reads: latencies on a loaded host. */
const CLOCK_SLACK_MS = 250;
const CLOCK_SLACK_RATIO = 0.25;

/**
 * Rules over a side's consecutive replies within one migration attempt (a `setup` starts the
 * next): total-time runs with the wall clock (now - start_time while the migration runs), and
 * setup-time, once set (it reads 0 for a moment after the status turns active), never changes;
 * transferred keeps up with what the previous reply counted.
 */
export function seriesProblems(replies: readonly TimedReply[]): string[] {
  const out: string[] = [];
  let previous: TimedReply | undefined;
  for (const r of replies) {
    const status = r.data.status ?? "none";
    if (status === "setup" || status === "none") {
      previous = undefined;
      continue;
    }
    const p = previous;
    previous = r;
    if (!p) continue;
    const a = p.data;
    const b = r.data;
    // A finished migration's figures are frozen: a reply after it with another total-time is a
    // new migration whose setup was never seen (a reversed pair's second hop, say).
    const ended = (s: string | undefined) =>
      s === "completed" || s === "failed" || s === "cancelled";
    if (ended(a.status) && a["total-time"] !== b["total-time"]) continue;
    const wall = r.t - p.t;
    const running = (s: string | undefined) => s === "active" || s === "postcopy-active";
    if (running(a.status) && running(b.status)) {
      const ta = a["total-time"];
      const tb = b["total-time"];
      if (ta !== undefined && tb !== undefined && p.sentT !== undefined && r.sentT !== undefined) {
        // QEMU computed a after asking it (p.sentT) and before its arrival (p.t), b likewise:
        // between them lie at least r.sentT - p.t and at most r.t - p.sentT of wall time, however
        // long a reply took to arrive (7.2 under a 90% throttle held one back 9.6 s). Whole ms
        // on two clocks: 2 ms either way.
        const delta = tb - ta;
        const low = r.sentT - p.t - 2;
        const high = r.t - p.sentT + 2;
        if (delta < low || delta > high) {
          out.push(
            `total-time went from ${ta} ms (asked t=${p.sentT}, read t=${p.t}) to ${tb} ms (asked t=${r.sentT}, read t=${r.t}): ${delta} ms, outside the ${low}..${high} ms of wall time between the two`,
          );
        }
      } else if (ta !== undefined && tb !== undefined) {
        const delta = tb - ta;
        const slack = CLOCK_SLACK_MS + CLOCK_SLACK_RATIO * wall;
        if (delta < 0 || Math.abs(delta - wall) > slack) {
          out.push(
            `total-time went from ${ta} ms (t=${p.t}) to ${tb} ms (t=${r.t}): ${delta} ms in ${wall} ms of wall time`,
          );
        }
      }
    }
    // transferred, read at the start of this reply, is no earlier than the previous reply's
    // byte counters: what that reply counted must be sent by now, less one buffer.
    if (b.ram && a.ram && RUNNING.includes(b.status ?? "")) {
      const short = transferredShortfall(b.ram.transferred, b.status, b.ram, a.ram);
      if (short) out.push(`transferred at t=${r.t} against the counters at t=${p.t}: ${short}`);
    }
    const sa = a["setup-time"];
    const sb = b["setup-time"];
    // Set once just after the status turns active (migration_thread: setup_time = now -
    // setup_start after migrate_set_state(ACTIVE)): 0 before that, then fixed.
    if (sa !== undefined && sb !== undefined && sa !== sb && sa !== 0) {
      out.push(`setup-time changed from ${sa} ms (t=${p.t}) to ${sb} ms (t=${r.t})`);
    }
  }
  return out;
}

/** What the checks need to know beyond the replies, to tell a known QEMU bug by its signature. */
export interface InvariantContext {
  /** Each side's QEMU version. */
  versions: Partial<Record<Side, QemuVersion>>;
  /** The host's CLOCK_MONOTONIC (ms) at timeline time t. */
  monotonicAt(t: number): number;
}

/** The context of a timeline recorded on this host, now: its wall-clock times on CLOCK_MONOTONIC. */
export function hostInvariantContext(
  timeline: Timeline,
  versions: InvariantContext["versions"],
): InvariantContext {
  const monotonic = monotonicNowMs();
  const wall = Date.now();
  return { versions, monotonicAt: (t) => monotonic - (wall - (timeline.startedAt + t)) };
}

/** A broken invariant, and the known QEMU bug it is (harness/checks/known-qemu-bugs.ts) if any. */
export interface InvariantFinding {
  text: string;
  knownBug?: KnownQemuBug;
}

/** Everything above over a recorded pair, both sides. */
export function invariantFindings(
  timeline: Timeline,
  context?: InvariantContext,
): InvariantFinding[] {
  const out: InvariantFinding[] = [];
  for (const side of ["source", "destination"] as const) {
    const replies = timeline.of(side, "query-migrate");
    for (const { t, data } of replies) {
      for (const b of replyBreaks(data, side)) {
        const clock = context && {
          replyMs: context.monotonicAt(t),
          runStartMs: context.monotonicAt(0),
        };
        const knownBug = knownQemuBug(b.rule, data, context?.versions[side], clock);
        out.push({
          text: `${side} query-migrate at t=${t} ms: ${b.text}`,
          ...(knownBug ? { knownBug } : {}),
        });
      }
    }
    if (side === "source") {
      for (const p of seriesProblems(replies)) out.push({ text: `${side}: ${p}` });
    }
  }
  return out;
}

/** The broken invariants no known QEMU bug explains. */
export function invariantProblems(timeline: Timeline, context?: InvariantContext): string[] {
  return invariantFindings(timeline, context)
    .filter((f) => !f.knownBug)
    .map((f) => f.text);
}
