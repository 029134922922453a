// How each QEMU of a pair is allowed to end, in the spirit of qtest's qtest_set_expected_status:
// by default it runs until the harness quits it and then exits 0; a test that makes a QEMU exit
// by itself (a destination whose incoming migration fails, a side the test kills) declares it.
// Anything else — a crash, a non-zero exit, a QEMU that ignores `quit` — fails the test.

import type { ExitInfo } from "../qemu/machine.ts";
import type { Side } from "./timeline.ts";

/** A QEMU that exits on its own during the test, and how. */
export interface ExpectedExit {
  exitCode?: number;
  signal?: NodeJS.Signals;
  /**
   * Instead: it is still running at teardown and does not obey "quit" (a postcopy destination
   * whose source died waits for pages forever), so teardown must kill it.
   */
  hangsOnQuit?: true;
}

function describeExit(e: ExitInfo): string {
  return e.signal ? `killed by ${e.signal}` : `exit code ${e.exitCode}`;
}

function matches(e: ExitInfo, want: ExpectedExit): boolean {
  if (want.signal !== undefined) return e.signal === want.signal;
  return e.signal === undefined && e.exitCode === (want.exitCode ?? 0);
}

/**
 * `early` is how the process had ended before teardown asked it to quit (undefined: it was
 * still running), `final` how it ended in the end.
 */
export function exitProblems(
  side: Side,
  early: ExitInfo | undefined,
  final: ExitInfo,
  expected: ExpectedExit | undefined,
  stderrTail: string,
): string[] {
  const tail = stderrTail.trim() ? `; its stderr ended with:\n${stderrTail.trim()}` : "";
  if (expected?.hangsOnQuit) {
    if (early) {
      return [
        `the ${side} QEMU was expected to hang on "quit" but exited by itself (${describeExit(early)})${tail}`,
      ];
    }
    return final.signal
      ? []
      : [`the ${side} QEMU was expected not to obey "quit" but ended with ${describeExit(final)}`];
  }
  if (expected) {
    if (!early) {
      return [
        `the ${side} QEMU was expected to exit by itself (${describeExit(expected)}) but was still running at teardown`,
      ];
    }
    return matches(early, expected)
      ? []
      : [
          `the ${side} QEMU exited with ${describeExit(early)}, expected ${describeExit(expected)}${tail}`,
        ];
  }
  if (early) {
    return [
      `the ${side} QEMU exited on its own during the test (${describeExit(early)}), which the test did not declare${tail}`,
    ];
  }
  if (final.signal) {
    return [
      `the ${side} QEMU did not exit on "quit" and was ${describeExit(final).replace("killed by", "killed with")}${tail}`,
    ];
  }
  return final.exitCode === 0
    ? []
    : [`the ${side} QEMU exited with ${describeExit(final)} after "quit"${tail}`];
}
