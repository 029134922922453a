// The A/B scenario: one migration, run the same way on the base and on the patched build (same
// guest, parameters, transport), recording both sides in named phases: before, incoming, the
// source's own statuses while it migrates (setup, active, ...), completed. The migration is slowed
// with max-bandwidth so `active` lasts long enough to be seen several times, then released so it
// converges. Each snapshot brackets HMP `info migrate` between two query-migrate reads.

import { MigrationPair, type Side } from "../migration/pair.ts";
import type { AccelRequest } from "../qemu/accel.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";
import type { SchemaInfo } from "../qmp/schema-info.ts";
import { type RunRecord, recordPair } from "../report/run-artefacts.ts";
import { runScenario } from "../scenario/run.ts";
import { MiB } from "../util/units.ts";

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
  transport: "tcp" | "unix";
  memoryMiB: number;
  /** Source max-bandwidth (bytes/s) while the active phase is sampled. */
  maxBandwidth: number;
  /** Snapshots of each side taken while the source is active. */
  activeSnapshots: number;
  activeIntervalMs: number;
  /** Boot-block guest's dirty rate, MiB/s: above maxBandwidth, so only the release completes it. */
  dirtyRateMiBps: number;
  timeoutMs: number;
}

export const DEFAULT_AB_SCENARIO: AbScenario = {
  accel: "tcg",
  transport: "tcp",
  memoryMiB: 128,
  maxBandwidth: 8 * MiB,
  activeSnapshots: 5,
  activeIntervalMs: 300,
  dirtyRateMiBps: 16,
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

/** Snapshots of both sides into `into`, each named by its phase. */
function recorder(pair: () => MigrationPair, into: AbSnapshot[]) {
  const snap = async (side: Side, phase: AbPhase): Promise<AbSnapshot> => {
    const p = pair();
    const { before, infoMigrate, migration } = await p.snapshot(side);
    const s = { phase, side, t: p.timeline.now(), before, infoMigrate, after: migration };
    into.push(s);
    return s;
  };
  // While migrating, a round is named by the source's status; a round in which the source
  // changed status between its two reads is a transition ("setup->active"), compared with
  // nothing, so timing cannot pass for a difference.
  return async (phase: AbPhase | "source-status"): Promise<AbSnapshot> => {
    const s = await snap("source", phase);
    if (phase === "source-status") {
      const a = s.before.status ?? "none";
      const b = s.after.status ?? "none";
      s.phase = a === b ? a : `${a}->${b}`;
    }
    await snap("destination", s.phase);
    return s;
  };
}

/** Held active by the bandwidth: sample rounds until enough were `active`. */
async function sampleActive(
  both: ReturnType<typeof recorder>,
  scenario: AbScenario,
  note: (text: string) => void,
): Promise<void> {
  const deadline = Date.now() + scenario.timeoutMs;
  let active = 0;
  for (;;) {
    const round = await both("source-status");
    const status = round.after.status ?? "none";
    if (status !== "active" && status !== "setup" && !status.startsWith("setup->")) break;
    if (round.phase === "active" && ++active >= scenario.activeSnapshots) return;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${scenario.timeoutMs} ms sampling the migration (source "${status}")`,
      );
    }
    await new Promise((r) => setTimeout(r, status === "active" ? scenario.activeIntervalMs : 20));
  }
  note(
    `only ${active} active snapshot(s) before the migration left active; lower max-bandwidth to see more`,
  );
}

/** Run the scenario on one binary. Never throws for a failed migration: see `outcome`. */
export async function runAbScenario(
  binary: string,
  scenario: AbScenario = DEFAULT_AB_SCENARIO,
  options: { parentDir?: string; name?: string; onNote?: (text: string) => void } = {},
): Promise<AbScenarioRecord> {
  const note = options.onNote ?? (() => undefined);
  const snapshots: AbSnapshot[] = [];
  let launched: MigrationPair | undefined;
  const both = recorder(() => launched as MigrationPair, snapshots);
  let error: unknown;
  try {
    await runScenario(
      {
        memoryMiB: scenario.memoryMiB,
        // A quarter of RAM dirtied: enough bytes that max-bandwidth holds `active` a while.
        guest: {
          kind: "bootblock",
          rangeEndMiB: Math.max(2, Math.floor(scenario.memoryMiB / 4)),
          dirtyRateMiBps: scenario.dirtyRateMiBps,
        },
        transport: { kind: scenario.transport },
        hold: { passes: 1, parameters: { "max-bandwidth": scenario.maxBandwidth } },
        timeoutMs: scenario.timeoutMs,
        hooks: {
          beforeMigrate: () => both("before").then(() => undefined),
          afterIncoming: () => both("incoming").then(() => undefined),
          afterStart: () => sampleActive(both, scenario, note),
          afterMigrate: () => both("completed").then(() => undefined),
        },
      },
      {
        binary,
        accel: scenario.accel,
        ...(options.parentDir ? { parentDir: options.parentDir } : {}),
      },
      async (o) => {
        launched = await MigrationPair.launch(o);
        return launched;
      },
    );
  } catch (e) {
    error = e;
  }
  if (!launched) throw error;
  const p = launched;
  let run: RunRecord | undefined;
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
  const schema = p.schema("source").info;
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
