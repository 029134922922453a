// The destination's query-migrate after a completed migration, as a contract that holds on every
// QEMU: where the binary's schema says destination-ram-stats.patch is in (source-only
// MigrationStats members optional), `total-time` and `ram` must be there and match the patch's
// formulas and what the source sent; where it is not, the released behaviour holds exactly:
// `{"status": "completed"}` and nothing else. A change in either direction is caught.

import { SOURCE_ONLY_RAM_STATS } from "../qmp/migration-features.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";

/** Members the patch fills on the destination. */
const DESTINATION_RAM_MEMBERS = [
  "total",
  "remaining",
  "page-size",
  "transferred",
  "normal",
  "normal-bytes",
  "duplicate",
  "mbps",
  "pages-per-second",
] as const;

/**
 * Problems with a completed destination's reply (empty when it keeps the contract).
 * `patched`: the destination's schema makes the source-only members optional.
 */
export function checkDestinationStats(
  destination: MigrationInfo,
  source: MigrationInfo,
  patched: boolean,
): string[] {
  const problems: string[] = [];
  if (destination.status !== "completed") {
    problems.push(`destination status is ${JSON.stringify(destination.status)}, not "completed"`);
  }
  if (!patched) {
    const extra = Object.keys(destination).filter((k) => k !== "status");
    if (extra.length > 0) {
      problems.push(
        `released behaviour is {"status": "completed"} on the destination, but it also reports ${extra.join(", ")}: ${JSON.stringify(destination)}`,
      );
    }
    return problems;
  }

  const time = destination["total-time"];
  const ram = destination.ram;
  if (typeof time !== "number" || time <= 0) {
    problems.push(`destination total-time is ${JSON.stringify(time)}; the patch reports it (> 0)`);
  }
  if (!ram) {
    problems.push("destination reports no ram member; the patch fills it after completion");
    return problems;
  }
  for (const member of DESTINATION_RAM_MEMBERS) {
    if (typeof ram[member] !== "number") problems.push(`destination ram.${member} is missing`);
  }
  for (const member of SOURCE_ONLY_RAM_STATS) {
    if (member in ram) {
      problems.push(
        `destination ram.${member} is present; the patch leaves source-only members out`,
      );
    }
  }
  const eq = (what: string, actual: number, expected: number, tolerance = 0) => {
    if (Math.abs(actual - expected) > tolerance) {
      problems.push(`destination ${what} is ${actual}, expected ${expected}`);
    }
  };
  eq("ram.remaining", ram.remaining, 0);
  eq("ram.normal-bytes (normal x page-size)", ram["normal-bytes"], ram.normal * ram["page-size"]);
  eq("ram.transferred (normal-bytes: pages received)", ram.transferred, ram["normal-bytes"]);
  if (typeof time === "number" && time > 0) {
    // The patch's formulas; pages-per-second is a truncated integer in QAPI.
    eq(
      "ram.mbps (transferred x 8 / total-time / 1000)",
      ram.mbps,
      (ram.transferred * 8) / time / 1000,
      1e-6,
    );
    eq(
      "ram.pages-per-second ((normal + duplicate) x 1000 / total-time)",
      ram["pages-per-second"],
      Math.trunc(((ram.normal + ram.duplicate) * 1000) / time),
      1,
    );
  }
  const src = source.ram;
  if (src) {
    eq("ram.total (the source's ram.total)", ram.total, src.total);
    eq("ram.page-size (the source's)", ram["page-size"], src["page-size"]);
    // Every page the source sent as normal or zero arrived as such.
    eq("ram.normal (the source's normal pages)", ram.normal, src.normal);
    eq("ram.duplicate (the source's zero pages)", ram.duplicate, src.duplicate);
  } else {
    problems.push("no source ram member to compare the destination's figures with");
  }
  return problems;
}
