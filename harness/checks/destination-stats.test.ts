// The "patch present" branch of the destination contract, proven on a reply shaped like the
// patch's own example: no QEMU in Debian carries destination-ram-stats.patch, so this is where
// that branch is exercised. The source side is constructed to match the example (same page
// counts), and is labelled so.

import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import type { MigrationInfo } from "../qmp/qapi.ts";
import { checkDestinationStats } from "./destination-stats.ts";

const example = JSON.parse(
  readFileSync(
    new URL("../fixtures/qmp-schema/destination-ram-stats-example.json", import.meta.url),
    "utf8",
  ),
).qmp as MigrationInfo;

/** Constructed: a completed source reply that sent what the example's destination received. */
const source: MigrationInfo = {
  status: "completed",
  "total-time": 120,
  ram: {
    transferred: 1_300_000,
    remaining: 0,
    total: 554508288,
    duplicate: 135101,
    normal: 281,
    "normal-bytes": 281 * 4096,
    mbps: 90,
    "page-size": 4096,
    "pages-per-second": 0,
    "dirty-sync-count": 2,
    "precopy-bytes": 1_200_000,
    "downtime-bytes": 100_000,
    "postcopy-bytes": 0,
  },
};

describe("destination-ram-stats contract", () => {
  test("the patch's own example reply keeps the contract", () => {
    expect(checkDestinationStats(example, source, true)).toEqual([]);
  });

  test("the same reply on an unpatched schema breaks the released behaviour", () => {
    expect(checkDestinationStats(example, source, false)).toEqual([
      expect.stringMatching(
        /released behaviour is \{"status": "completed"\} .* also reports total-time, ram/,
      ),
    ]);
  });

  test("released behaviour: status only passes; status only on a patched schema fails", () => {
    expect(checkDestinationStats({ status: "completed" }, source, false)).toEqual([]);
    const problems = checkDestinationStats({ status: "completed" }, source, true);
    expect(problems).toContain("destination total-time is undefined; the patch reports it (> 0)");
    expect(problems).toContain(
      "destination reports no ram member; the patch fills it after completion",
    );
  });

  test("a wrong formula, a source-only member and a page count that differs from the source are each named", () => {
    const ram = { ...(example.ram as NonNullable<MigrationInfo["ram"]>) };
    const bad: MigrationInfo = {
      ...example,
      ram: { ...ram, mbps: 50, "dirty-sync-count": 2, duplicate: ram.duplicate - 1 },
    };
    const problems = checkDestinationStats(bad, source, true);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^destination ram\.mbps \(transferred x 8 \/ total-time \/ 1000\) is 50, expected 97\.95/,
        ),
        "destination ram.dirty-sync-count is present; the patch leaves source-only members out",
        "destination ram.duplicate (the source's zero pages) is 135100, expected 135101",
      ]),
    );
  });
});
