// The vitest fixture every migration suite uses: `launchPair` starts a MigrationPair inside the
// run's temp root; whatever happens in the test, every pair it launched is shut down, a failing
// test gets both sides' diagnostics in its report, and every pair's recorded QMP and HMP
// snapshots of both sides are checked against each other (harness/checks/timeline-checks.ts).

import { join } from "node:path";
import { test as base, inject } from "vitest";
import { timelineProblems } from "../harness/checks/timeline-checks.ts";
import { MigrationPair, type PairOptions } from "../harness/migration/pair.ts";
import { recordPair, saveRun, slugify } from "../harness/report/run-artefacts.ts";

export interface MigrationFixtures {
  launchPair: (options?: PairOptions) => Promise<MigrationPair>;
}

export const test = base.extend<MigrationFixtures>({
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
    await Promise.all(pairs.map((p) => p.close()));
    // Whatever the test checked, everything both sides reported must hang together.
    const problems = pairs.flatMap((p, i) =>
      timelineProblems(p.timeline).map((x) => `pair ${i + 1}: ${x}`),
    );
    if (problems.length > 0) {
      throw new Error(`the recorded QMP and HMP snapshots disagree:\n${problems.join("\n")}`);
    }
  },
});

/** "[7.2, tcg]": where a test ran, for its name. */
export function where(b: { label: string; accel: string }): string {
  return `[${b.label}, ${b.accel}]`;
}
