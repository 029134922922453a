// Runs a declared scenario on one pair: probe what the QEMUs have, configure both sides, start
// the guest, migrate, hold and release, reach the expected outcome, verify the guest. Every step
// goes through the pair's recorded verbs and named waits, so a failure names side and phase.

import { notConverging } from "../checks/convergence.ts";
import { DEFAULT_DIRTY_RATE_MIBPS } from "../guest/dirty-rate.ts";
import { sampleSwitchover } from "../guest/downtime.ts";
import { CONVERGING_PARAMETERS, holdParameters } from "../migration/convergence.ts";
import { MigrationPair, type PairOptions } from "../migration/pair.ts";
import type { MigrationResult } from "../migration/result.ts";
import type { Side } from "../migration/timeline.ts";
import { ExecuteError } from "../qmp/errors.ts";
import type { MigrationParameters } from "../qmp/qapi.ts";
import { timeoutMs } from "../util/timeouts.ts";
import {
  type ExpectedOutcome,
  type Placement,
  type Scenario,
  ScenarioError,
  ScenarioUnsupported,
} from "./scenario.ts";
import { describeMissing, missingFeatures } from "./support.ts";

export interface ScenarioRun {
  pair: MigrationPair;
  result: MigrationResult;
}

export type PairLauncher = (options: PairOptions) => Promise<MigrationPair>;

const SIDES = ["source", "destination"] as const;

function perSide<T extends object>(
  spec: { both?: T; source?: T; destination?: T } | undefined,
  side: Side,
): T {
  return { ...spec?.both, ...spec?.[side] } as T;
}

/** The pair a scenario runs on: configured by the scenario itself, not by the launch. */
export function pairOptions(scenario: Scenario, where: Placement): PairOptions {
  const side = (s: Side) => {
    const binary = scenario.binaries?.[s];
    const args = [...(scenario.qemuArgs?.both ?? []), ...(scenario.qemuArgs?.[s] ?? [])];
    const o = {
      ...(binary ? { binary } : {}),
      ...(args.length > 0 ? { extraArgs: args } : {}),
      // Guest-visible downtime reads the source's progress word in place too.
      ...(s === "source" && scenario.guestDowntime ? { ramBackingFile: true } : {}),
    };
    return Object.keys(o).length > 0 ? { [s]: o } : {};
  };
  return {
    binary: where.binary,
    accel: where.accel,
    memoryMiB: scenario.memoryMiB ?? 128,
    keepQemuConvergenceDefaults: true,
    ...(scenario.guest ? { guest: scenario.guest } : {}),
    ...(scenario.transport ? { transport: scenario.transport } : {}),
    ...(scenario.outgoingUri ? { outgoingUri: scenario.outgoingUri } : {}),
    ...(scenario.faultProxy ? { faultProxy: true } : {}),
    ...(scenario.machineType ? { machineType: scenario.machineType } : {}),
    ...(scenario.cpu ? { cpu: scenario.cpu } : {}),
    ...(scenario.pollIntervalMs ? { pollIntervalMs: scenario.pollIntervalMs } : {}),
    ...(where.parentDir ? { parentDir: where.parentDir } : {}),
    ...(scenario.guestArgs ? { guestArgs: scenario.guestArgs } : {}),
    ...side("source"),
    ...side("destination"),
  };
}

/** Capabilities and parameters of each side; the source's limits follow hold and the guest. */
async function configure(pair: MigrationPair, scenario: Scenario): Promise<void> {
  const missing = await missingFeatures(pair, scenario);
  const required = new Set<string>(scenario.required ?? []);
  const fatal = missing.filter((m) => required.has(m.name));
  if (fatal.length > 0) {
    throw new ScenarioError(`required: ${describeMissing(pair, fatal, { known: true })}`);
  }
  if (missing.length > 0) throw new ScenarioUnsupported(describeMissing(pair, missing));
  for (const [side, exit] of Object.entries(scenario.exits ?? {})) {
    pair.expectExit(side as Side, exit);
  }
  await Promise.all(
    SIDES.map(async (side) => {
      const capabilities = perSide(scenario.capabilities, side);
      if (Object.keys(capabilities).length > 0) await pair.setCapabilities(side, capabilities);
      const parameters: MigrationParameters = {
        ...(side === "source" ? sourceLimits(pair, scenario) : {}),
        ...perSide(scenario.parameters, side),
      };
      if (Object.keys(parameters).length > 0) await pair.setParameters(side, parameters);
    }),
  );
}

/** Held: limits it cannot converge under. Otherwise a dirtying guest gets converging ones. */
function sourceLimits(pair: MigrationPair, scenario: Scenario): MigrationParameters {
  if (scenario.hold)
    return { ...holdParameters(guestDirtyRate(pair)), ...scenario.hold.parameters };
  return pair.guest.params ? CONVERGING_PARAMETERS : {};
}

function guestDirtyRate(pair: MigrationPair): number {
  const o = pair.guest.options;
  return o.kind === "bootblock" ? (o.dirtyRateMiBps ?? DEFAULT_DIRTY_RATE_MIBPS) : 0;
}

function describeOutcome(e: ExpectedOutcome): string {
  return e.status === "qmp-error" ? `${e.command} refused with ${e.class} ${e.desc}` : e.status;
}

/** `migrate` was refused: the expected outcome, or a failure naming the QMP error. */
async function refused(
  pair: MigrationPair,
  error: unknown,
  expected: ExpectedOutcome,
  uri: string,
  started: number,
): Promise<MigrationResult> {
  if (!(error instanceof ExecuteError) || expected.status !== "qmp-error") {
    throw await pair.fail(
      `${(error as Error).message} (expected: ${describeOutcome(expected)})`,
      "source",
    );
  }
  if (error.errorClass !== expected.class || !expected.desc.test(error.desc)) {
    throw new ScenarioError(
      `${error.command} was refused with ${error.errorClass}: "${error.desc}", expected ${expected.class} matching ${expected.desc}`,
    );
  }
  const final = await pair.finalState("qmp-error");
  return {
    ...final,
    uri,
    durationMs: Date.now() - started,
    qmpError: { command: error.command, class: error.errorClass, desc: error.desc },
  };
}

/** migrate-start-postcopy, both sides seen in postcopy-active, then the scenario's own hook. */
async function switchToPostcopy(pair: MigrationPair, scenario: Scenario): Promise<void> {
  await pair.startPostcopy();
  await pair.waitForStatuses(
    { source: ["postcopy-active"], destination: ["postcopy-active"] },
    { timeoutMs: scenario.timeoutMs ?? timeoutMs("migration") },
  );
  await scenario.hooks?.whilePostcopy?.(pair);
}

/** Completion: both sides completed (not-converging judged meanwhile), then the verification. */
async function awaitCompletion(
  pair: MigrationPair,
  scenario: Scenario,
  uri: string,
  started: number,
): Promise<MigrationResult> {
  const limit = scenario.timeoutMs ?? timeoutMs("migration");
  const sampler = scenario.guestDowntime
    ? sampleSwitchover(pair.source, pair.destination, limit)
    : undefined;
  try {
    // A storage transport (exec, file, fdset): the destination loads what the source wrote.
    if (pair.incomingDeferred) await pair.startDeferredIncoming({ timeoutMs: limit });
    // For the not-converging verdict's explanation only: a source gone by now (killed during
    // postcopy, say) is reported by the wait below, with its own headline.
    const parameters = pair.source.isRunning()
      ? await pair.queryParameters("source").catch(() => ({}))
      : {};
    const judged = {
      sinceT: pair.timeline.now(),
      ...(scenario.convergence && scenario.convergence !== "wait"
        ? { passes: scenario.convergence.stalledPasses }
        : {}),
    };
    // A destination declared to exit (it refuses what arrived last, say) is waited for as gone.
    const destinationExits = scenario.exits?.destination !== undefined;
    await pair.waitForStatuses(
      destinationExits
        ? { source: ["completed"] }
        : { source: ["completed"], destination: ["completed"] },
      {
        timeoutMs: limit,
        ...(scenario.convergence === "wait"
          ? {}
          : { failWhen: () => notConverging(pair.timeline, parameters, judged) }),
      },
    );
    if (destinationExits) {
      await pair.waitForExit("destination", { timeoutMs: timeoutMs("failure") });
    }
    // A stopped source hands over a paused VM (its saved run state): resume it.
    if (scenario.live === false) await pair.contVm("destination");
    const result = await pair.finishCompleted(uri, started, scenario.ramCheck ?? true);
    sampler?.stop();
    const guestDowntime = await sampler?.result;
    if (!guestDowntime) return result;
    pair.timeline.record(
      "harness",
      "note",
      `guest-visible downtime ${guestDowntime.stretchMs.toFixed(1)} ms (QEMU downtime ${result.source.migration.downtime} ms)`,
    );
    return { ...result, guestDowntime };
  } finally {
    sampler?.stop();
  }
}

/** A source that must end failed or cancelled, with the error-desc the scenario names. */
async function awaitEnding(
  pair: MigrationPair,
  scenario: Scenario,
  expected: { status: "failed"; errorDesc?: RegExp } | { status: "cancelled" },
  uri: string,
  started: number,
): Promise<MigrationResult> {
  const wrong = expected.status === "failed" ? ["cancelled", "completed"] : ["failed", "completed"];
  await pair.waitForStatus("source", expected.status, {
    timeoutMs: scenario.timeoutMs ?? timeoutMs("failure"),
    // Only the source's other endings: its destination fails (or exits) when it is cancelled.
    failOn: [],
    failWhen: (s) => {
      const status = s.source.migration.status ?? "none";
      const desc = s.source.migration["error-desc"];
      return wrong.includes(status)
        ? `the source reports migration status "${status}"${desc ? ` (${desc})` : ""}`
        : undefined;
    },
  });
  const result = {
    uri,
    durationMs: Date.now() - started,
    ...(await pair.finalState(expected.status)),
  };
  const desc = result.source.migration["error-desc"];
  if (expected.status === "failed" && expected.errorDesc && !expected.errorDesc.test(desc ?? "")) {
    throw await pair.fail(
      `the source failed with error-desc ${JSON.stringify(desc)}, expected one matching ${expected.errorDesc}`,
      "source",
    );
  }
  return result;
}

/** From an accepted `migrate` to the outcome the scenario expects. */
async function reachOutcome(
  pair: MigrationPair,
  scenario: Scenario,
  uri: string,
  started: number,
): Promise<MigrationResult> {
  const expected = scenario.expect ?? { status: "completed" };
  await scenario.hooks?.afterStart?.(pair);
  if (scenario.hold) {
    await pair.waitForPasses(scenario.hold.passes);
    await scenario.hooks?.whileHeld?.(pair);
    // Held precopy ends in postcopy when asked for, else converges once released.
    if (scenario.postcopy) await switchToPostcopy(pair, scenario);
    else if (expected.status === "completed") {
      await pair.setParameters("source", CONVERGING_PARAMETERS);
    }
  }
  switch (expected.status) {
    case "completed":
      return awaitCompletion(pair, scenario, uri, started);
    case "failed":
    case "cancelled":
      return awaitEnding(pair, scenario, expected, uri, started);
    case "qmp-error":
      throw await pair.fail(
        `QEMU accepted ${expected.command}, expected it refused with ${expected.class} matching ${expected.desc}`,
        "source",
      );
  }
}

/**
 * Run `scenario` on a pair launched by `launch` (the suites' fixture, which tears it down) and
 * return the pair with the migration's result. Throws ScenarioUnsupported when the QEMU lacks a
 * feature the scenario names (the fixture turns it into a skip with that reason).
 */
export async function runScenario(
  scenario: Scenario,
  where: Placement,
  launch: PairLauncher = MigrationPair.launch,
): Promise<ScenarioRun> {
  const pair = await launch(pairOptions(scenario, where));
  const skip = scenario.skipIf?.(pair);
  if (skip) throw new ScenarioUnsupported(skip);
  await configure(pair, scenario);
  await pair.waitForGuest();
  await scenario.hooks?.beforeMigrate?.(pair);
  if (scenario.live === false) await pair.stopVm("source");
  const expected = scenario.expect ?? { status: "completed" };
  const started = Date.now();
  let uri: string;
  try {
    const incoming =
      typeof scenario.incoming === "function" ? scenario.incoming(pair) : scenario.incoming;
    uri = await pair.startIncoming(incoming);
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause ?? error;
    if (expected.status === "qmp-error" && expected.command === "migrate-incoming") {
      return { pair, result: await refused(pair, cause, expected, "", started) };
    }
    throw error;
  }
  await scenario.hooks?.afterIncoming?.(pair);
  let result: MigrationResult;
  try {
    await pair.startMigration(uri);
  } catch (error) {
    result = await refused(pair, error, expected, uri, started);
    await scenario.hooks?.afterMigrate?.(pair, result);
    return { pair, result };
  }
  if (pair.incomingDeferred && expected.status === "qmp-error") {
    // The destination of a storage transport refuses what the source wrote, or how it is told.
    try {
      await pair.startDeferredIncoming({ timeoutMs: scenario.timeoutMs ?? timeoutMs("migration") });
    } catch (error) {
      if (!(error instanceof ExecuteError)) throw error;
      result = await refused(pair, error, expected, uri, started);
      await scenario.hooks?.afterMigrate?.(pair, result);
      return { pair, result };
    }
  }
  result = await reachOutcome(pair, scenario, uri, started);
  await scenario.hooks?.afterMigrate?.(pair, result);
  return { pair, result };
}
