// `qemu-migtest migrate`: one precopy migration between two fresh QEMUs, with live progress,
// a summary of both sides and the guest RAM check at the end; optionally saved as a run file
// and an HTML report.

import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_STALLED_PASSES } from "../checks/convergence.ts";
import { DEFAULT_DIRTY_RATE_MIBPS, dirtyRatePagesPerSecond } from "../guest/dirty-rate.ts";
import { CONVERGING_PARAMETERS } from "../migration/convergence.ts";
import { MigrationPair, type MigrationResult, type PairOptions } from "../migration/pair.ts";
import type { AccelRequest } from "../qemu/accel.ts";
import { machineArch } from "../qemu/machine-arch.ts";
import { commonMachineType } from "../qemu/machine-types.ts";
import { resolveQemuBinary } from "../qemu/matrix.ts";
import type { MigrationParameters } from "../qmp/qapi.ts";
import { renderReportHtml } from "../report/html.ts";
import {
  type RamCheckVerdict,
  type RunRecord,
  recordPair,
  saveRun,
  slugify,
  type Verdict,
} from "../report/run-artefacts.ts";
import type { MigrateSetParameters, MigrationCapabilities } from "../scenario/qapi-names.ts";
import { runScenario } from "../scenario/run.ts";
import type { Scenario } from "../scenario/scenario.ts";
import { makeDir } from "../util/make-dir.ts";
import {
  capabilities,
  integer,
  keyValues,
  nonNegativeNumber,
  type OptionSpec,
  oneOf,
  parseFlags,
  UsageError,
} from "./args.ts";
import { runSummary } from "./format.ts";
import { Progress, type ProgressOutput } from "./progress.ts";

export const GUESTS = ["bootblock", "none"] as const;
export type Guest = (typeof GUESTS)[number];

const MiB = 1024 * 1024;

export const migrateOptions = {
  binary: { type: "string" },
  "source-binary": { type: "string" },
  "destination-binary": { type: "string" },
  accel: { type: "string" },
  guest: { type: "string" },
  transport: { type: "string" },
  "memory-mib": { type: "string" },
  "machine-type": { type: "string" },
  capability: { type: "string", multiple: true },
  parameter: { type: "string", multiple: true },
  "max-bandwidth": { type: "string" },
  "downtime-limit": { type: "string" },
  "dirty-rate": { type: "string" },
  "page-spin": { type: "string" },
  "timeout-s": { type: "string" },
  "keep-going": { type: "boolean" },
  results: { type: "string" },
  progress: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpec;

export const migrateUsage = `usage: qemu-migtest migrate [options]

One precopy migration between two fresh QEMUs on this machine. Prints both sides' QEMU, PID and
temp dir, a live progress line (status, pass, transferred, remaining, throughput, dirty rate,
expected downtime), then both sides' final query-migrate and info migrate and the RAM check.

  --binary SPEC               QEMU for both sides: a path, a command on PATH, or a matrix name
                              (7.2, 10.0, 11.1; see scripts/install-qemu-matrix). Default: qemu-system-x86_64
  --source-binary SPEC        QEMU for the source only (cross-version migration)
  --destination-binary SPEC   QEMU for the destination only
  --accel auto|kvm|tcg        accelerator (default auto: KVM only when it is hardware KVM)
  --guest bootblock|none      bootblock: the RAM-dirtying guest, checked byte by byte on the
                              destination afterwards (default); none: firmware only, no RAM check
  --transport tcp|unix        migration channel (default tcp on 127.0.0.1)
  --memory-mib N              guest RAM (default 128)
  --machine-type TYPE         -machine type (default pc; pin e.g. pc-i440fx-7.2 across versions)
  --capability NAME[=on|off]  set a migration capability on both sides (repeatable)
  --parameter NAME=VALUE      set a migration parameter on both sides (repeatable)
  --max-bandwidth BYTES       source max-bandwidth in bytes/s (slow it down to watch it)
  --downtime-limit MS         downtime-limit on both sides
  --dirty-rate MiB/s          bootblock: MiB of 4 KiB pages dirtied per second, paced on the
                              guest's TSC so the same under TCG and KVM (default ${DEFAULT_DIRTY_RATE_MIBPS};
                              0 dirties as fast as the vCPU can, which may never converge)
  --page-spin N               bootblock, raw knob: busy-loop iterations after each page write,
                              on top of the pacing (default 0)
  --timeout-s N               give up waiting for completion after N s (default 120)
  --keep-going                wait for the timeout even once the migration is judged not to
                              converge (by default it stops after ${DEFAULT_STALLED_PASSES} passes without progress, saying why)
  --results DIR               save the run (DIR/runs/<name>.json) and its HTML report
                              (DIR/reports/<name>.html); default $QEMU_MIGTEST_RESULTS if set
  --progress auto|tty|plain|none
                              live line on a TTY, a plain line per second otherwise (default auto)
  -h, --help                  this text

Exit status: 0 when both sides completed and the RAM check passed (or did not run), 1 otherwise,
2 for a bad flag.`;

export interface MigrateSettings {
  sourceBinary: string;
  destinationBinary: string;
  accel: AccelRequest;
  guest: Guest;
  transport: "tcp" | "unix";
  memoryMiB: number;
  machineType?: string;
  capabilities: Record<string, boolean>;
  parameters: MigrationParameters;
  sourceParameters: MigrationParameters;
  /** Boot-block guest's dirty rate in MiB/s (0: unpaced). */
  dirtyRateMiBps: number;
  pageSpin: number;
  timeoutMs: number;
  /** Wait for the timeout even when the migration is judged not to converge. */
  keepGoing: boolean;
  resultsDir?: string;
  progress: "auto" | "tty" | "plain" | "none";
}

export function migrateSettings(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): MigrateSettings | "help" {
  const { values: v, positionals } = parseFlags("qemu-migtest migrate", argv, migrateOptions);
  if (v.help) return "help";
  if (positionals.length > 0) {
    throw new UsageError(
      `qemu-migtest migrate takes no positional arguments (got ${positionals.join(" ")}); see --help`,
    );
  }
  const binary = v.binary ?? "qemu-system-x86_64";
  const parameters: MigrationParameters = keyValues("--parameter", v.parameter);
  const downtime = integer("--downtime-limit", v["downtime-limit"]);
  if (downtime !== undefined) parameters["downtime-limit"] = downtime;
  const bandwidth = integer("--max-bandwidth", v["max-bandwidth"]);
  const memoryMiB = integer("--memory-mib", v["memory-mib"]) ?? 128;
  if (memoryMiB < 16) throw new UsageError(`--memory-mib must be at least 16, not ${memoryMiB}`);
  return {
    sourceBinary: v["source-binary"] ?? binary,
    destinationBinary: v["destination-binary"] ?? binary,
    accel: oneOf("--accel", v.accel, ["auto", "kvm", "tcg"] as const, "auto"),
    guest: oneOf("--guest", v.guest, GUESTS, "bootblock"),
    transport: oneOf("--transport", v.transport, ["tcp", "unix"] as const, "tcp"),
    memoryMiB,
    ...(v["machine-type"] ? { machineType: v["machine-type"] } : {}),
    capabilities: capabilities(v.capability),
    parameters,
    sourceParameters: bandwidth === undefined ? {} : { "max-bandwidth": bandwidth },
    dirtyRateMiBps: dirtyRateFlag(v["dirty-rate"]),
    pageSpin: integer("--page-spin", v["page-spin"]) ?? 0,
    timeoutMs: (integer("--timeout-s", v["timeout-s"]) ?? 120) * 1000,
    keepGoing: v["keep-going"] === true,
    ...((v.results ?? env.QEMU_MIGTEST_RESULTS)
      ? { resultsDir: v.results ?? env.QEMU_MIGTEST_RESULTS }
      : {}),
    progress: oneOf("--progress", v.progress, ["auto", "tty", "plain", "none"] as const, "auto"),
  };
}

/** --dirty-rate in MiB/s; a rate the guest cannot be given (below a page/s, above 1 TiB/s) too. */
function dirtyRateFlag(value: string | undefined): number {
  const rate = nonNegativeNumber("--dirty-rate", value, "MiB/s") ?? DEFAULT_DIRTY_RATE_MIBPS;
  try {
    dirtyRatePagesPerSecond(rate);
  } catch (error) {
    throw new UsageError(`--dirty-rate: ${(error as Error).message}`);
  }
  return rate;
}

/** The dirtied range for a guest of `memoryMiB`: from 1 MiB, about 78% of RAM (100 of 128 MiB). */
export function bootblockRange(memoryMiB: number): { rangeStart: number; rangeEnd: number } {
  return { rangeStart: 1 * MiB, rangeEnd: Math.max(2, Math.floor((memoryMiB * 25) / 32)) * MiB };
}

export interface MigrateOutcome {
  run: RunRecord;
  ok: boolean;
  files: { run?: string; report?: string };
}

/** Run one migration with `settings`, printing to `out`. Never throws for a failed migration. */
export async function runMigrate(
  settings: MigrateSettings,
  out: ProgressOutput = process.stdout,
): Promise<MigrateOutcome> {
  const progressOut: ProgressOutput =
    settings.progress === "auto"
      ? out
      : settings.progress === "none"
        ? { write: () => undefined }
        : { write: (t) => out.write(t), isTTY: settings.progress === "tty", columns: out.columns };
  const progress = new Progress(progressOut);
  // `none` silences the progress lines only: what was run, the verdicts and a failure still print.
  const say = (text: string) =>
    settings.progress === "none" ? out.write(`${text}\n`) : progress.line(text);
  if (settings.resultsDir) await assertWritableDir(settings.resultsDir, "--results");
  const [source, destination] = await Promise.all([
    resolveQemuBinary(settings.sourceBinary),
    resolveQemuBinary(settings.destinationBinary),
  ]);

  // "pc" is an alias for each binary's own newest type: two versions disagree on it, so a
  // cross-version pair gets the newest versioned type both offer (as the suites do).
  let machineType = settings.machineType;
  if (!machineType && source.path !== destination.path) {
    machineType = await commonMachineType(
      [source.path, destination.path],
      machineArch(source.arch).machineFamily,
    );
    const board = machineArch(source.arch).defaultMachineType;
    say(
      `machine type: ${machineType} (the newest versioned type both QEMUs offer; "${board}" means a different one on each; --machine-type overrides)`,
    );
  }
  for (const note of replacedDefaults(settings)) say(note);
  let pair: MigrationPair | undefined;
  const scenario = migrateScenario(settings, source.path, destination.path, machineType);
  const onSnapshot: PairOptions["onSnapshot"] = (side, snap) =>
    progress.snapshot(
      side,
      snap,
      pair?.timeline.of("source", "event").filter((e) => e.data.event === "MIGRATION_PASS").length,
    );
  const range = bootblockRange(settings.memoryMiB);
  const extraOptions = {
    guest: settings.guest,
    ...(settings.guest === "bootblock"
      ? {
          bootblock: {
            ...range,
            dirtyRateMiBps: settings.dirtyRateMiBps,
            pageSpin: settings.pageSpin,
          },
        }
      : {}),
  };
  let result: MigrationResult | undefined;
  let failure: unknown;
  const launch = async (o: PairOptions) => {
    pair = await MigrationPair.launch({ ...o, onSnapshot });
    for (const side of ["source", "destination"] as const) {
      const m = pair.machine(side);
      say(
        `${side}: QEMU ${m.binary.version} pid ${m.pid} accel ${m.accel.accel} (${m.accel.reason}) dir ${m.dir}`,
      );
    }
    return pair;
  };
  try {
    result = (await runScenario(scenario, { binary: source.path, accel: settings.accel }, launch))
      .result;
  } catch (error) {
    if (!pair) throw error;
    failure = error;
  }
  progress.finish();
  const p = pair as unknown as MigrationPair;
  try {
    return await report(p, settings, say, { result, failure, extraOptions });
  } finally {
    await p.close();
  }
}

/** The verdicts, the RAM check, the run record and its files, and the summary printed. */
async function report(
  p: MigrationPair,
  settings: MigrateSettings,
  say: (text: string) => void,
  ran: { result?: MigrationResult; failure: unknown; extraOptions: Record<string, unknown> },
): Promise<MigrateOutcome> {
  const { result, extraOptions } = ran;
  let failure = ran.failure;
  let ramCheck: RamCheckVerdict | undefined;
  const verdicts: Verdict[] = [];
  if (result) {
    say(`migration over ${result.uri} completed in ${result.durationMs} ms`);
    verdicts.push(
      { name: "both sides completed", ok: true },
      {
        name: "destination VM running",
        ok: result.destination.vm.running,
        detail: result.destination.vm.status,
      },
    );
    if (p.guest.params) {
      try {
        const { check } = await p.checkRam();
        ramCheck = { ok: check.ok, summary: check.summary };
      } catch (error) {
        failure = error;
      }
    }
  } else {
    verdicts.push({ name: "both sides completed", ok: false, detail: firstLine(failure) });
  }
  const run = await recordPair(p, {
    name: "qemu-migtest migrate",
    ...(result ? { result } : {}),
    ...(failure !== undefined ? { error: failure } : {}),
    verdicts,
    ...(ramCheck ? { ramCheck } : {}),
    options: extraOptions,
  });
  const files: MigrateOutcome["files"] = settings.resultsDir
    ? await saveArtefacts(settings.resultsDir, run)
    : {};
  say("");
  say(runSummary(run));
  if (failure !== undefined) say(`\nmigration FAILED: ${(failure as Error).message ?? failure}`);
  if (files.run) say(`\nrun saved: ${files.run}`);
  if (files.report) say(`report: ${files.report}`);
  const ok = failure === undefined && (ramCheck?.ok ?? true) && verdicts.every((v) => v.ok);
  return { run, ok, files };
}

/** The CLI's flags as a scenario: names from the command line are checked at run time. */
export function migrateScenario(
  settings: MigrateSettings,
  source: string,
  destination: string,
  machineType: string | undefined,
): Scenario {
  const range = bootblockRange(settings.memoryMiB);
  return {
    memoryMiB: settings.memoryMiB,
    // With the boot-block guest: how long it could not run across the switchover.
    guestDowntime: settings.guest === "bootblock",
    ...(machineType ? { machineType } : {}),
    guest:
      settings.guest === "bootblock"
        ? {
            kind: "bootblock",
            rangeEndMiB: range.rangeEnd / MiB,
            dirtyRateMiBps: settings.dirtyRateMiBps,
            pageSpin: settings.pageSpin,
          }
        : { kind: "none" },
    transport: { kind: settings.transport },
    // A name the QEMU lacks is an error here, not a skip.
    capabilities: { both: settings.capabilities as MigrationCapabilities },
    parameters: {
      both: settings.parameters as MigrateSetParameters,
      source: settings.sourceParameters as MigrateSetParameters,
    },
    required: [
      ...Object.keys(settings.capabilities),
      ...Object.keys(settings.parameters),
      ...Object.keys(settings.sourceParameters),
    ] as Scenario["required"] & string[],
    binaries: { source, destination },
    timeoutMs: settings.timeoutMs,
    ...(settings.keepGoing ? { convergence: "wait" as const } : {}),
    // The RAM check runs after, so that a failing one still gives its verdict and summary.
    ramCheck: false,
  };
}

/** Which of the harness's converging defaults (CONVERGING_PARAMETERS) a flag replaced. */
export function replacedDefaults(settings: MigrateSettings): string[] {
  if (settings.guest !== "bootblock") return [];
  const chosen = { ...settings.parameters, ...settings.sourceParameters };
  const replaced = Object.keys(CONVERGING_PARAMETERS).filter((k) => k in chosen);
  if (replaced.length === 0) return [];
  const kept = Object.entries(CONVERGING_PARAMETERS).filter(([k]) => !(k in chosen));
  return [
    `note: ${replaced.map((k) => `${k} ${JSON.stringify(chosen[k])}`).join(", ")} replaces the harness's converging default${replaced.length > 1 ? "s" : ""} (${replaced.map((k) => `${k} ${JSON.stringify(CONVERGING_PARAMETERS[k])}`).join(", ")})${kept.length > 0 ? `; ${kept.map(([k, v]) => `${k} stays at the harness's ${JSON.stringify(v)}`).join(", ")}` : ""}`,
  ];
}

/** A results dir that cannot be written is refused before anything is launched. */
async function assertWritableDir(dir: string, flag: string): Promise<void> {
  try {
    await makeDir(dir);
    const probe = join(dir, `.qemu-migtest-write-test-${process.pid}`);
    await writeFile(probe, "");
    await rm(probe, { force: true });
  } catch (error) {
    throw new UsageError(
      `${flag} ${dir}: cannot write there (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); choose a directory you can create and write`,
    );
  }
}

async function saveArtefacts(
  dir: string,
  run: RunRecord,
): Promise<{ run: string; report: string }> {
  const base = `migrate-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  const runPath = await saveRun(join(dir, "runs"), run, slugify(base));
  await makeDir(join(dir, "reports"));
  const reportPath = join(dir, "reports", `${slugify(base)}.html`);
  await writeFile(reportPath, renderReportHtml(run));
  return { run: runPath, report: reportPath };
}

function firstLine(error: unknown): string {
  return String((error as Error)?.message ?? error).split("\n")[0] ?? "";
}

export async function migrateCommand(argv: string[]): Promise<number> {
  const settings = migrateSettings(argv);
  if (settings === "help") {
    console.log(migrateUsage);
    return 0;
  }
  const outcome = await runMigrate(settings);
  return outcome.ok ? 0 : 1;
}
