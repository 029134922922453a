// The vitest fixtures every migration suite uses. `qemu` is the binary and accelerator the test
// runs on (set per describe with `forEachQemu`); `scenario` runs a declared scenario on it and
// turns "this QEMU lacks a feature the scenario names" into a reported skip; `launchPair` starts a
// bare MigrationPair. Whatever happens in the test, every pair it launched is shut down, a failing
// test gets both sides' diagnostics in its report, every pair's recorded QMP and HMP snapshots of
// both sides are checked against each other (harness/checks/timeline-checks.ts) and against the
// figures that must hang together in any reply (harness/checks/invariants.ts), and a QEMU that
// ended in a way the test did not declare (a crash, a non-zero exit) fails the test.

import { join } from "node:path";
import { test as base, describe, inject } from "vitest";
import { hostInvariantContext, invariantFindings } from "../harness/checks/invariants.ts";
import { timelineProblems } from "../harness/checks/timeline-checks.ts";
import { MigrationPair, type PairOptions } from "../harness/migration/pair.ts";
import type { QemuArch } from "../harness/qemu/arch.ts";
import type { BinaryUnderTest } from "../harness/qemu/binaries-under-test.ts";
import { recordPair, saveRun, slugify } from "../harness/report/run-artefacts.ts";
import { runScenario, type ScenarioRun } from "../harness/scenario/run.ts";
import { type Scenario, ScenarioUnsupported } from "../harness/scenario/scenario.ts";

export interface MigrationFixtures {
  /** The QEMU binary and accelerator this test runs on (forEachQemu sets it). */
  qemu: BinaryUnderTest;
  launchPair: (options?: PairOptions) => Promise<MigrationPair>;
  /** Run a scenario on `qemu`; a feature the QEMU lacks skips the test with the reason. */
  scenario: (scenario: Scenario) => Promise<ScenarioRun>;
}

export const test = base.extend<MigrationFixtures>({
  qemu: async ({ task }, use) => {
    throw new Error(
      `${task.name}: no QEMU under test for this test; wrap it in forEachQemu(...) or test.override({ qemu })`,
    );
    // biome-ignore lint/correctness/noUnreachable: the fixture exists only to be overridden
    await use(undefined as never);
  },
  launchPair: async ({ onTestFailed, task }, use) => {
    const pairs: MigrationPair[] = [];
    // Vitest refuses annotations once a test has failed, so the diagnostics go in as an extra
    // error of the failed test: the terminal report and JUnit both print it. A MigrationError
    // already carries them in its message.
    onTestFailed(({ task }) => {
      const errors = task.result?.errors;
      if (!errors || errors.some((e) => e.name === "MigrationError")) return;
      for (const [i, pair] of pairs.entries()) {
        errors.push({
          name: "MigrationDiagnostics",
          message: `pair ${i + 1} of this test, phase ${pair.phase}:\n${pair.diagnostics()}`,
          stack: "",
        });
      }
    });
    await use(async (options = {}) => {
      const pair = await MigrationPair.launch({ parentDir: inject("runDir"), ...options });
      pairs.push(pair);
      return pair;
    });
    const results = process.env.QEMU_MIGTEST_RESULTS;
    if (results) {
      // The run artefact of every pair: $QEMU_MIGTEST_RESULTS/runs/<test name>-<n>.json.
      const errors = task.result?.errors ?? [];
      for (const [i, pair] of pairs.entries()) {
        const run = await recordPair(pair, {
          name: task.name,
          verdicts: [
            {
              name: "test",
              ok: errors.length === 0,
              ...(errors[0] ? { detail: String(errors[0].message).split("\n")[0] } : {}),
            },
          ],
        });
        await saveRun(join(results, "runs"), run, `${slugify(task.name)}-${i + 1}`);
      }
    }
    const exits = await Promise.all(pairs.map((p) => p.close()));
    // Whatever the test checked, everything both sides reported must hang together, and every
    // QEMU must have ended the way the test said it would.
    const findings = pairs.map((p) =>
      invariantFindings(
        p.timeline,
        hostInvariantContext(p.timeline, {
          source: p.source.binary,
          destination: p.destination.binary,
        }),
      ),
    );
    // A known QEMU bug (fixed upstream, matched by its signature) is said, not failed on.
    for (const [i, list] of findings.entries()) {
      for (const f of list) {
        if (!f.knownBug) continue;
        const line = `pair ${i + 1}: known QEMU bug, fixed in ${f.knownBug.fixedIn.major}.${f.knownBug.fixedIn.minor} by ${f.knownBug.fixedIn.commit}: ${f.text} (${f.knownBug.title})`;
        pairs[i]?.timeline.record("harness", "note", line);
        console.warn(`${task.name}: ${line}`);
      }
    }
    const problems = pairs.flatMap((p, i) => [
      ...timelineProblems(p.timeline).map((x) => `pair ${i + 1}: ${x}`),
      ...(findings[i] ?? []).filter((f) => !f.knownBug).map((f) => `pair ${i + 1}: ${f.text}`),
      ...(exits[i] ?? []).map((x) => `pair ${i + 1}: ${x}`),
    ]);
    if (problems.length > 0) {
      throw new Error(`at teardown of this test's pairs:\n${problems.join("\n")}`);
    }
  },
  scenario: async ({ qemu, launchPair, skip }, use) => {
    await use(async (scenario) => {
      try {
        return await runScenario(
          scenario,
          { binary: qemu.path, accel: qemu.accelRequest, parentDir: inject("runDir") },
          launchPair,
        );
      } catch (error) {
        if (error instanceof ScenarioUnsupported) return skip(error.message);
        throw error;
      }
    });
  },
});

/** "[7.2, x86_64, tcg]": where a test ran, for its name. */
export function where(b: { label: string; arch: string; accel: string }): string {
  return `[${b.label}, ${b.arch}, ${b.accel}]`;
}

export interface QemuSelection {
  /**
   * The targets the suite means (default: every one). On any other target its describe holds
   * one skipped test saying why, so what was not covered shows in the report.
   */
  arches?: readonly QemuArch[];
  /** Why the suite is limited to `arches`. */
  archReason?: string;
  /**
   * Targets whose tests the smoke set (npm test) runs (default: x86_64 only); on the others the
   * whole describe is tagged `full`. "all": every target in the smoke set too.
   */
  smoke?: readonly QemuArch[] | "all";
}

/**
 * Test options that keep a variant in the smoke set on x86_64 only: in a suite the smoke set runs
 * on every target, a variant that says nothing new about the second one.
 */
export function smokeOnX86Only(b: { arch: QemuArch }): { tags: string[] } {
  return { tags: b.arch === "x86_64" ? [] : ["full"] };
}

/**
 * Test options that keep a variant in the smoke set once: on the newest x86_64 binary under test.
 * For variants whose family the smoke set already covers on every version.
 */
export function smokeOnce(b: BinaryUnderTest): { tags: string[] } {
  const newest = inject("binaries")
    .filter((x) => x.arch === "x86_64")
    .sort((x, y) => y.version.localeCompare(x.version, undefined, { numeric: true }))[0];
  return { tags: newest === undefined || newest.path === b.path ? [] : ["full"] };
}

/**
 * One describe per QEMU under test (`name [7.2, x86_64, tcg]`), each test getting that QEMU as
 * `qemu`.
 */
export function forEachQemu(
  name: string,
  body: (b: BinaryUnderTest) => void,
  selection: QemuSelection = {},
): void {
  const smoke = selection.smoke ?? ["x86_64"];
  for (const b of inject("binaries")) {
    const title = `${name} ${where(b)}`;
    if (selection.arches && !selection.arches.includes(b.arch)) {
      describe(title, () => {
        test.skip(`not run on ${b.arch}: ${selection.archReason ?? `this suite is for ${selection.arches?.join(", ")} only`}`, () =>
          undefined);
      });
      continue;
    }
    const inSmoke = smoke === "all" || smoke.includes(b.arch);
    describe(title, inSmoke ? {} : { tags: ["full"] }, () => {
      test.override({ qemu: b });
      body(b);
    });
  }
}
