// The vitest fixture every migration suite uses: `launchPair` starts a MigrationPair inside the
// run's temp root; whatever happens in the test, every pair it launched is shut down, and a
// failing test gets both sides' diagnostics and the timeline attached to its report.

import { test as base, inject } from "vitest";
import { MigrationPair, type PairOptions } from "../harness/migration.ts";

export interface MigrationFixtures {
  launchPair: (options?: PairOptions) => Promise<MigrationPair>;
}

export const test = base.extend<MigrationFixtures>({
  launchPair: async ({ onTestFailed, annotate }, use) => {
    const pairs: MigrationPair[] = [];
    onTestFailed(async () => {
      for (const [i, pair] of pairs.entries()) {
        await annotate(`pair ${i + 1} diagnostics (phase ${pair.phase})`, "diagnostics", {
          body: pair.diagnostics(),
          contentType: "text/plain",
        });
        await annotate(`pair ${i + 1} timeline`, "timeline", {
          body: JSON.stringify(pair.timeline, null, 1),
          contentType: "application/json",
        });
      }
    });
    await use(async (options = {}) => {
      const pair = await MigrationPair.launch({ parentDir: inject("runDir"), ...options });
      pairs.push(pair);
      return pair;
    });
    await Promise.all(pairs.map((p) => p.close()));
  },
});

/** "[7.2, tcg]": where a test ran, for its name. */
export function where(b: { label: string; accel: string }): string {
  return `[${b.label}, ${b.accel}]`;
}
