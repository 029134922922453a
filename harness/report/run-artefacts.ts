// A run artefact: everything one migration left behind, as one JSON file: the whole timeline
// (every query-migrate and info migrate snapshot of both sides, events, commands), both command
// lines, QEMU versions, accelerators, the options asked for, the final QMP and HMP state,
// capabilities and parameters as read back, and the verdicts. Reports are rendered from it.

import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { MigrationPair, MigrationResult } from "../migration/pair.ts";
import type { Side, TimelineEntry } from "../migration/timeline.ts";
import type {
  MigrationCapabilityStatus,
  MigrationInfo,
  MigrationParameters,
  StatusInfo,
} from "../qmp/qapi.ts";
import { makeDir } from "../util/make-dir.ts";

export const RUN_FORMAT = "qemu-migtest-run/1";

export interface RunSide {
  binary: { path: string; version: string };
  pid?: number;
  commandLine: string[];
  accel: { accel: string; requested?: string; reason: string };
  /** query-migrate-capabilities at the end (absent when the side was gone). */
  capabilities?: MigrationCapabilityStatus[];
  /** query-migrate-parameters at the end (absent when the side was gone). */
  parameters?: MigrationParameters;
  final: {
    queryMigrate?: MigrationInfo;
    infoMigrate?: string;
    vm?: StatusInfo;
    /** MIGRATION event statuses, in order. */
    events: string[];
  };
}

export interface Verdict {
  name: string;
  ok: boolean;
  detail?: string;
}

/** The guest RAM check, as the report and the summary show it; absent means "not run". */
export interface RamCheckVerdict {
  ok: boolean;
  summary: string;
}

export interface RunRecord {
  format: typeof RUN_FORMAT;
  /** What ran: a test name or "qemu-migtest migrate". */
  name: string;
  createdAt: string;
  /** The pair's options (functions dropped) and anything else the caller wants kept. */
  options: Record<string, unknown>;
  uri?: string;
  durationMs?: number;
  outcome: { ok: boolean; phase: string; error?: string };
  sides: Record<Side, RunSide>;
  timeline: { startedAt: string; entries: TimelineEntry[] };
  verdicts: Verdict[];
  ramCheck?: RamCheckVerdict;
  /** The longest stretch the guest could not run across the switchover, next to QEMU's downtime. */
  guestDowntime?: {
    stretchMs: number;
    resolutionMs: number;
    guestClockMs: number;
    qemuDowntimeMs?: number;
  };
}

export class RunFileError extends Error {
  override name = "RunFileError";
}

export interface RecordExtras {
  name: string;
  result?: MigrationResult;
  error?: unknown;
  verdicts?: Verdict[];
  ramCheck?: RamCheckVerdict;
  /** Merged into `options` (e.g. the guest the CLI booted). */
  options?: Record<string, unknown>;
}

/**
 * Build the record of a pair. Sides still running are asked for their capabilities and
 * parameters (best effort, short timeout); everything else comes from the timeline.
 */
export async function recordPair(pair: MigrationPair, extras: RecordExtras): Promise<RunRecord> {
  const side = async (s: Side): Promise<RunSide> => {
    const m = pair.machine(s);
    const ask = async <T>(command: string): Promise<T | undefined> =>
      m.isRunning()
        ? m.qmp.execute<T>(command, undefined, { timeoutMs: 2000 }).catch(() => undefined)
        : undefined;
    const [capabilities, parameters] = await Promise.all([
      ask<MigrationCapabilityStatus[]>("query-migrate-capabilities"),
      ask<MigrationParameters>("query-migrate-parameters"),
    ]);
    const fromResult = extras.result?.[s];
    return {
      binary: { path: m.binary.path, version: m.binary.version },
      pid: m.pid,
      commandLine: [...m.commandLine],
      accel: { accel: m.accel.accel, requested: m.accel.requested, reason: m.accel.reason },
      ...(capabilities ? { capabilities } : {}),
      ...(parameters ? { parameters } : {}),
      final: {
        queryMigrate: fromResult?.migration ?? pair.timeline.last(s, "query-migrate")?.data,
        infoMigrate: fromResult?.infoMigrate ?? pair.timeline.last(s, "info-migrate")?.data,
        ...(fromResult?.vm ? { vm: fromResult.vm } : {}),
        events: pair.timeline.migrationEvents(s),
      },
    };
  };
  const [source, destination] = await Promise.all([side("source"), side("destination")]);
  const error = extras.error === undefined ? undefined : errorText(extras.error);
  const record: RunRecord = {
    format: RUN_FORMAT,
    name: extras.name,
    createdAt: new Date().toISOString(),
    options: { ...plainOptions(pair.options), ...extras.options },
    ...(pair.uri ? { uri: pair.uri } : {}),
    ...(extras.result ? { durationMs: extras.result.durationMs } : {}),
    outcome: {
      // A suite's pair has no MigrationResult of its own: its verdicts (the test) decide.
      ok:
        error === undefined &&
        (extras.verdicts ?? []).every((v) => v.ok) &&
        (extras.result !== undefined || (extras.verdicts ?? []).length > 0),
      phase: pair.phase,
      ...(error !== undefined ? { error } : {}),
    },
    sides: { source, destination },
    timeline: JSON.parse(JSON.stringify(pair.timeline.toJSON())),
    verdicts: extras.verdicts ?? [],
    ...(extras.ramCheck ? { ramCheck: extras.ramCheck } : {}),
    ...(extras.result?.guestDowntime
      ? {
          guestDowntime: {
            stretchMs: extras.result.guestDowntime.stretchMs,
            resolutionMs: extras.result.guestDowntime.resolutionMs,
            guestClockMs: extras.result.guestDowntime.guestClockMs,
            ...(extras.result.source.migration.downtime === undefined
              ? {}
              : { qemuDowntimeMs: extras.result.source.migration.downtime }),
          },
        }
      : {}),
  };
  return record;
}

/** Options as data: functions (onSnapshot) and undefined members dropped. */
function plainOptions(options: object): Record<string, unknown> {
  return JSON.parse(JSON.stringify(options));
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A file-name-safe form of a test name: "precopy over tcp [7.2, tcg]" -> "precopy-over-tcp-7-2-tcg". */
export function slugify(name: string, maxLength = 100): string {
  const slug = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return (slug || "run").slice(0, maxLength).replace(/-+$/, "");
}

/** Write `run` as `<dir>/<baseName>.json` (dir created); returns the file's path. */
export async function saveRun(
  dir: string,
  run: RunRecord,
  baseName: string = slugify(run.name),
): Promise<string> {
  await makeDir(dir);
  const path = join(dir, `${baseName}.json`);
  await writeFile(path, `${JSON.stringify(run, null, 1)}\n`);
  return path;
}

/** Read a run file, checking it is one (and of a format this harness reads). */
export async function loadRun(path: string): Promise<RunRecord> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new RunFileError(`cannot read run file ${path}: ${(error as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new RunFileError(`run file ${path} is not JSON: ${(error as Error).message}`);
  }
  const run = data as Partial<RunRecord>;
  if (run?.format !== RUN_FORMAT) {
    throw new RunFileError(
      `${path} is not a qemu-migtest run file: its "format" is ${JSON.stringify(run?.format)}, expected "${RUN_FORMAT}" (write one with qemu-migtest migrate --results DIR)`,
    );
  }
  for (const key of ["sides", "timeline", "outcome"] as const) {
    if (typeof run[key] !== "object" || run[key] === null) {
      throw new RunFileError(`run file ${path} has no "${key}" object`);
    }
  }
  if (!Array.isArray(run.timeline?.entries)) {
    throw new RunFileError(`run file ${path} has no timeline entries array`);
  }
  return run as RunRecord;
}
