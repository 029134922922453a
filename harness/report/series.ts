// The time series a report charts, taken from a run's timeline: the source's query-migrate
// snapshots (the destination reports no RAM statistics in released QEMU), the source's
// MIGRATION_PASS events as pass markers, and its status changes as bands.

import type { TimelineEntry } from "../migration/timeline.ts";
import type { RunRecord } from "./run-artefacts.ts";

/** QEMU's default downtime-limit (ms), when the run did not record the parameter. */
export const DEFAULT_DOWNTIME_LIMIT_MS = 300;

export interface StatusBand {
  status: string;
  /** Seconds since the start of the pair. */
  from: number;
  to: number;
}

export interface PassMarker {
  t: number;
  pass: number;
}

export interface ReportSeries {
  /** Seconds since the start of the pair, one per source query-migrate snapshot with `ram`. */
  t: number[];
  /** ram.remaining, bytes. */
  ramRemaining: (number | null)[];
  /** Top-level `remaining` (system-wide: RAM and devices), bytes; all null before 11.1. */
  systemRemaining: (number | null)[];
  hasSystemRemaining: boolean;
  /** ram.mbps. */
  mbps: (number | null)[];
  /** ram.dirty-pages-rate, pages/s. */
  dirtyPagesRate: (number | null)[];
  /** expected-downtime, ms (only while active). */
  expectedDowntime: (number | null)[];
  downtimeLimitMs: number;
  passes: PassMarker[];
  statusBands: StatusBand[];
  /** Seconds: the last entry of the timeline. */
  end: number;
}

export function reportSeries(run: Pick<RunRecord, "timeline" | "sides">): ReportSeries {
  const entries = run.timeline.entries;
  const source = entries.filter((e) => e.side === "source");
  const snaps = source.filter(
    (e): e is Extract<TimelineEntry, { kind: "query-migrate" }> => e.kind === "query-migrate",
  );
  const s: ReportSeries = {
    t: [],
    ramRemaining: [],
    systemRemaining: [],
    hasSystemRemaining: false,
    mbps: [],
    dirtyPagesRate: [],
    expectedDowntime: [],
    downtimeLimitMs: downtimeLimit(run),
    passes: [],
    statusBands: [],
    end: seconds(entries.at(-1)?.t ?? 0),
  };
  let lastT = Number.NEGATIVE_INFINITY;
  for (const e of snaps) {
    const ram = e.data.ram;
    // Two snapshots bracket every info migrate; keep one point per instant.
    if (!ram || e.t === lastT) continue;
    lastT = e.t;
    s.t.push(seconds(e.t));
    s.ramRemaining.push(ram.remaining ?? null);
    const system = typeof e.data.remaining === "number" ? e.data.remaining : null;
    if (system !== null) s.hasSystemRemaining = true;
    s.systemRemaining.push(system);
    s.mbps.push(ram.mbps ?? null);
    s.dirtyPagesRate.push(ram["dirty-pages-rate"] ?? null);
    s.expectedDowntime.push(e.data["expected-downtime"] ?? null);
  }
  for (const e of source) {
    if (e.kind === "event" && e.data.event === "MIGRATION_PASS") {
      s.passes.push({ t: seconds(e.t), pass: Number(e.data.data?.pass ?? s.passes.length + 1) });
    }
  }
  s.statusBands = statusBands(source, s.end);
  return s;
}

/** Status from MIGRATION events and query-migrate alike, whichever tells first. */
function statusBands(source: TimelineEntry[], end: number): StatusBand[] {
  const bands: StatusBand[] = [];
  for (const e of source) {
    let status: string | undefined;
    if (e.kind === "query-migrate") status = e.data.status;
    else if (e.kind === "event" && e.data.event === "MIGRATION") {
      status = String(e.data.data?.status);
    }
    if (!status || status === "none") continue;
    const last = bands.at(-1);
    if (last?.status === status) continue;
    const t = seconds(e.t);
    if (last) last.to = t;
    bands.push({ status, from: t, to: end });
  }
  return bands;
}

function downtimeLimit(run: Pick<RunRecord, "sides">): number {
  const v = run.sides.source.parameters?.["downtime-limit"];
  return typeof v === "number" ? v : DEFAULT_DOWNTIME_LIMIT_MS;
}

function seconds(ms: number): number {
  return ms / 1000;
}
