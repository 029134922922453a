// A small synthetic run record for the report's unit tests: a source that goes setup -> active
// -> completed over 3 s with falling `remaining`, two MIGRATION_PASS events, a destination that
// only reports its status (as released QEMU does).

import type { TimelineEntry } from "../migration/timeline.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";
import { MiB } from "../util/units.ts";
import { RUN_FORMAT, type RunRecord, type RunSide } from "./run-artefacts.ts";

function ram(remaining: number, mbps: number, rate: number) {
  return {
    transferred: 128 * MiB - remaining,
    remaining,
    total: 128 * MiB,
    duplicate: 10,
    normal: 100,
    "normal-bytes": 409600,
    mbps,
    "page-size": 4096,
    "pages-per-second": 1000,
    "dirty-pages-rate": rate,
    "dirty-sync-count": 1,
  };
}

export function sampleRun(options: { systemRemaining?: boolean } = {}): RunRecord {
  const sys = (n: number) => (options.systemRemaining ? { remaining: n + 4096 } : {});
  const entries: TimelineEntry[] = [
    {
      t: 100,
      side: "source",
      kind: "event",
      data: {
        event: "MIGRATION",
        data: { status: "setup" },
        timestamp: { seconds: 0, microseconds: 0 },
      },
    },
    {
      t: 150,
      side: "source",
      kind: "event",
      data: {
        event: "MIGRATION_PASS",
        data: { pass: 1 },
        timestamp: { seconds: 0, microseconds: 0 },
      },
    },
    {
      t: 200,
      side: "source",
      kind: "query-migrate",
      data: {
        status: "active",
        ...sys(100 * MiB),
        ram: ram(100 * MiB, 800, 0),
        "expected-downtime": 300,
      },
    },
    { t: 201, side: "source", kind: "info-migrate", data: "Migration status: active\n" },
    {
      t: 202,
      side: "source",
      kind: "query-migrate",
      data: {
        status: "active",
        ...sys(99 * MiB),
        ram: ram(99 * MiB, 800, 0),
        "expected-downtime": 300,
      },
    },
    {
      t: 1200,
      side: "source",
      kind: "query-migrate",
      data: {
        status: "active",
        ...sys(40 * MiB),
        ram: ram(40 * MiB, 900, 5000),
        "expected-downtime": 450,
      },
    },
    {
      t: 1300,
      side: "source",
      kind: "event",
      data: {
        event: "MIGRATION_PASS",
        data: { pass: 2 },
        timestamp: { seconds: 1, microseconds: 0 },
      },
    },
    {
      t: 2200,
      side: "source",
      kind: "query-migrate",
      data: {
        status: "active",
        ...sys(5 * MiB),
        ram: ram(5 * MiB, 950, 3000),
        "expected-downtime": 120,
      },
    },
    { t: 2300, side: "destination", kind: "query-migrate", data: { status: "active" } },
    {
      t: 3000,
      side: "source",
      kind: "query-migrate",
      data: { status: "completed", ram: ram(0, 960, 0), downtime: 20 },
    },
    {
      t: 3001,
      side: "source",
      kind: "info-migrate",
      data: "Migration status: completed\ntotal time: 2900 ms\n",
    },
    { t: 3050, side: "destination", kind: "info-migrate", data: "Migration status: completed\n" },
  ];
  const side = (name: string, queryMigrate: MigrationInfo, info: string): RunSide => ({
    binary: { path: "/usr/bin/qemu-system-x86_64", version: "7.2.22" },
    pid: name === "source" ? 100 : 101,
    commandLine: ["/usr/bin/qemu-system-x86_64", "-name", name],
    accel: { accel: "tcg", reason: "tcg requested" },
    capabilities: [{ capability: "events", state: true }],
    parameters: { "downtime-limit": 250, "max-bandwidth": 134217728 },
    final: {
      queryMigrate: queryMigrate,
      infoMigrate: info,
      events: ["setup", "active", "completed"],
    },
  });
  return {
    format: RUN_FORMAT,
    name: "sample </script> run",
    createdAt: "2026-01-01T00:00:00.000Z",
    options: {},
    uri: "tcp:127.0.0.1:4444",
    durationMs: 2900,
    outcome: { ok: true, phase: "verify" },
    sides: {
      source: side(
        "source",
        { status: "completed", ram: ram(0, 960, 0) },
        "Migration status: completed\n",
      ),
      destination: side("destination", { status: "completed" }, "Migration status: completed\n"),
    },
    timeline: { startedAt: "2026-01-01T00:00:00.000Z", entries },
    verdicts: [{ name: "both sides completed", ok: true }],
  };
}
