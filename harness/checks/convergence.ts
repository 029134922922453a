// Whether a migration that is expected to complete is converging, judged as soon as it can be:
// the amount left to send (the system-wide `remaining` where QEMU has it, else ram.remaining) has
// not fallen over the last few dirty-bitmap syncs. The verdict says why in QEMU's own figures:
// expected downtime against downtime-limit, the guest's dirty rate against the bandwidth.

import type { Timeline } from "../migration/timeline.ts";
import type { MigrationInfo, MigrationParameters } from "../qmp/qapi.ts";
import { MiB } from "../util/units.ts";
import { detectStall, type PassSample } from "./stall-detector.ts";

/** Stalled syncs before a migration is called not converging (each takes a whole pass). */
export const DEFAULT_STALLED_PASSES = 5;

/**
 * One sample per source dirty-bitmap sync: the first reply that reports the new count, among
 * those recorded from `sinceT` on (a held migration's flat passes before its release must not
 * count against it).
 */
export function syncSamples(timeline: Timeline, sinceT = 0): PassSample[] {
  const out: PassSample[] = [];
  let last = 0;
  for (const { t, data } of timeline.of("source", "query-migrate")) {
    if (t < sinceT) continue;
    const syncs = data.ram?.["dirty-sync-count"] ?? 0;
    if (data.status !== "active" || !data.ram || syncs <= last) continue;
    last = syncs;
    out.push({
      pass: syncs,
      remaining: data.remaining ?? data.ram.remaining,
      ramRemaining: data.ram.remaining,
    });
  }
  return out;
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/** The figures that explain a stall, from the last active reply and the source's parameters. */
export function whyNotConverging(info: MigrationInfo, parameters: MigrationParameters): string {
  const parts: string[] = [];
  const limit = parameters["downtime-limit"];
  if (info["expected-downtime"] !== undefined && typeof limit === "number") {
    parts.push(
      `expected downtime ${info["expected-downtime"]} ms against downtime-limit ${limit} ms`,
    );
  }
  const ram = info.ram;
  const bandwidth = parameters["max-bandwidth"];
  if (ram?.["dirty-pages-rate"] !== undefined) {
    const dirty = ram["dirty-pages-rate"] * (ram["page-size"] ?? 4096);
    const sent = ram.mbps ? (ram.mbps * 1e6) / 8 : undefined;
    parts.push(
      `the guest dirties ${mib(dirty)}/s` +
        (sent !== undefined ? ` while ${mib(sent)}/s is sent` : "") +
        (typeof bandwidth === "number" ? ` (max-bandwidth ${mib(bandwidth)}/s)` : ""),
    );
  }
  return parts.join("; ");
}

/**
 * What QEMU may send in one downtime window at most: max-bandwidth x downtime-limit (QEMU's own
 * threshold uses the measured bandwidth, never above the limit). 0 when either is unknown.
 */
export function switchoverBytes(parameters: MigrationParameters): number {
  const bandwidth = parameters["max-bandwidth"];
  const limit = parameters["downtime-limit"];
  if (typeof bandwidth !== "number" || typeof limit !== "number") return 0;
  return (bandwidth * limit) / 1000;
}

/**
 * A reason when the recorded migration is not converging, else undefined. `parameters` are the
 * source's migration parameters (for the explanation).
 */
export function notConverging(
  timeline: Timeline,
  parameters: MigrationParameters,
  options: { passes?: number; sinceT?: number } = {},
): string | undefined {
  const samples = syncSamples(timeline, options.sinceT);
  const passes = options.passes ?? DEFAULT_STALLED_PASSES;
  const verdict = detectStall(samples, { passes });
  if (!verdict.stalled) return undefined;
  // Left at or under what one downtime window can carry, the switchover is due, however many
  // syncs QEMU takes before it (11.1 ran ten in 5 ms with nothing left to send).
  const lowest = Math.min(...samples.slice(-(passes + 1)).map((x) => x.remaining));
  if (lowest <= switchoverBytes(parameters)) return undefined;
  const last = timeline.last("source", "query-migrate")?.data ?? {};
  const why = whyNotConverging(last, parameters);
  return `the migration is not converging: ${verdict.reason.replace(/^not converging: /, "")}${why ? `; ${why}` : ""}`;
}
