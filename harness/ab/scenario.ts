// The A/B scenario: one migration, run the same way on the base and on the patched build (same
// guest, parameters, transport), recording both sides in named phases: before, incoming, the
// source's own statuses while it migrates (setup, active, ...), completed. The migration is slowed
// with max-bandwidth so `active` lasts long enough to be seen several times, then released so it
// converges. Each snapshot brackets HMP `info migrate` between two query-migrate reads.

import { MigrationPair, type Side, type Transport } from "../migration/pair.ts";
import type { AccelRequest } from "../qemu/accel.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";
import type { SchemaInfo } from "../qmp/schema.ts";
import { type RunRecord, recordPair } from "../report/run-artefacts.ts";

/** before, incoming, then the source's status (setup, active, device, ...), then completed. */
export type AbPhase = string;

export interface AbSnapshot {
  phase: AbPhase;
  side: Side;
  /** ms since the pair started. */
  t: number;
  /** query-migrate just before info migrate. */
  before: MigrationInfo;
  infoMigrate: string;
  /** query-migrate just after info migrate. */
  after: MigrationInfo;
}

export interface AbScenario {
  accel: AccelRequest;
  transport: Transport;
  memoryMiB: number;
  /** Source max-bandwidth (bytes/s) while the active phase is sampled. */
  maxBandwidth: number;
  /** Snapshots of each side taken while the source is active. */
  activeSnapshots: number;
  activeIntervalMs: number;
  /** Bootblock guest: busy-loop iterations per dirtied page (slow dirtying converges). */
  pageSpin: number;
  timeoutMs: number;
}

export const DEFAULT_AB_SCENARIO: AbScenario = {
  accel: "tcg",
  transport: "tcp",
  memoryMiB: 128,
  maxBandwidth: 8 * 1024 * 1024,
  activeSnapshots: 5,
  activeIntervalMs: 300,
  pageSpin: 20_000,
  timeoutMs: 90_000,
};

export interface AbScenarioRecord {
  binary: { path: string; version: string };
  scenario: AbScenario;
  /** Both sides' query-qmp-schema (same binary: the source's). */
  schema: SchemaInfo[];
  snapshots: AbSnapshot[];
  outcome: { ok: boolean; error?: string };
  /** The project's run record of this migration (timeline, command lines...), for its report. */
  run?: RunRecord;
}

const UNLIMITED_BANDWIDTH = 100 * 1024 * 1024 * 1024;

/** Run the scenario on one binary. Never throws for a failed migration: see `outcome`. */
export async function runAbScenario(
  binary: string,
  scenario: AbScenario = DEFAULT_AB_SCENARIO,
  options: { parentDir?: string; name?: string; onNote?: (text: string) => void } = {},
): Promise<AbScenarioRecord> {
  const note = options.onNote ?? (() => undefined);
  const snapshots: AbSnapshot[] = [];
  const p = await MigrationPair.launch({
    binary,
    accel: scenario.accel,
    memoryMiB: scenario.memoryMiB,
    // A quarter of RAM dirtied: enough bytes that max-bandwidth holds `active` a while.
    guest: {
      kind: "bootblock",
      rangeEndMiB: Math.max(2, Math.floor(scenario.memoryMiB / 4)),
      pageSpin: scenario.pageSpin,
    },
    transport: scenario.transport,
    source: { parameters: { "max-bandwidth": scenario.maxBandwidth } },
    ...(options.parentDir ? { parentDir: options.parentDir } : {}),
  });
  const snap = async (side: Side, phase: AbPhase): Promise<AbSnapshot> => {
    const { before, infoMigrate, migration } = await p.snapshot(side);
    const s = { phase, side, t: p.timeline.now(), before, infoMigrate, after: migration };
    snapshots.push(s);
    return s;
  };
  // While migrating, a round is named by the source's status; a round in which the source
  // changed status between its two reads is a transition ("setup->active"), compared with
  // nothing, so timing cannot pass for a difference.
  const both = async (phase: AbPhase | "source-status"): Promise<AbSnapshot> => {
    const s = await snap("source", phase);
    if (phase === "source-status") {
      const a = s.before.status ?? "none";
      const b = s.after.status ?? "none";
      s.phase = a === b ? a : `${a}->${b}`;
    }
    await snap("destination", s.phase);
    return s;
  };
  let error: unknown;
  let run: RunRecord | undefined;
  const schema = p.schema("source").info;
  try {
    await p.waitForGuest();
    await both("before");
    await p.startIncoming();
    await both("incoming");
    await p.startMigration();
    // Sample until enough active rounds were seen, or the source left the running statuses.
    const deadline = Date.now() + scenario.timeoutMs;
    let active = 0;
    for (;;) {
      const round = await both("source-status");
      const status = round.after.status ?? "none";
      if (status === "failed" || status === "cancelled") {
        throw new Error(
          `the source reports migration status "${status}"${round.after["error-desc"] ? ` (${round.after["error-desc"]})` : ""}`,
        );
      }
      if (status === "completed") break;
      if (round.phase === "active" && ++active >= scenario.activeSnapshots) break;
      if (Date.now() > deadline)
        throw new Error(
          `timed out after ${scenario.timeoutMs} ms sampling the migration (source "${status}")`,
        );
      await new Promise((r) => setTimeout(r, status === "active" ? scenario.activeIntervalMs : 20));
    }
    if (active < scenario.activeSnapshots) {
      note(
        `only ${active} active snapshot(s) before the migration completed; lower max-bandwidth to see more`,
      );
    }
    await p.setParameters("source", { "max-bandwidth": UNLIMITED_BANDWIDTH });
    await p.waitForStatus(
      { source: ["completed"], destination: ["completed"] },
      { timeoutMs: scenario.timeoutMs },
    );
    await both("completed");
  } catch (e) {
    error = e;
  }
  try {
    run = await recordPair(p, {
      name: options.name ?? `ab scenario on ${binary}`,
      ...(error !== undefined ? { error } : {}),
      options: { scenario },
    });
  } catch {
    // The run record only feeds the HTML report; the A/B data does not depend on it.
  }
  const version = p.source.binary.version;
  await p.close();
  return {
    binary: { path: binary, version },
    scenario,
    schema,
    snapshots,
    outcome:
      error === undefined
        ? { ok: true }
        : { ok: false, error: error instanceof Error ? error.message : String(error) },
    ...(run ? { run } : {}),
  };
}
