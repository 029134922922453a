// Runs once in vitest's main process: makes the run's temp root (every machine's dir goes
// inside it), probes the QEMU binaries under test once, and at the end sweeps the root: any QEMU
// still alive by its PID file is a leak, killed and reported as a failure of the run.

import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import {
  type BinaryUnderTest,
  formatUnavailable,
  selectBinaries,
} from "../harness/qemu/binaries-under-test.ts";
import { sweepRunDir } from "../harness/qemu/process-registry.ts";
import { sharedMemoryDir } from "../harness/util/paths.ts";

declare module "vitest" {
  export interface ProvidedContext {
    runDir: string;
    binaries: BinaryUnderTest[];
  }
}

export default async function setup(project: TestProject) {
  // Short root (unix socket paths must stay under 108 bytes), on tmpfs where there is one: guest
  // RAM files then live inside machine dirs and go with the final sweep, whatever happened.
  const runDir = mkdtempSync(join(sharedMemoryDir(), "qmt-"));
  process.env.QEMU_MIGTEST_RUN_DIR = runDir;
  project.provide("runDir", runDir);
  const selection = await selectBinaries();
  project.provide("binaries", selection.binaries);
  // What the run does not cover, once, in the reporter's output (a missing aarch64 build, say).
  if (selection.unavailable.length > 0) console.info(formatUnavailable(selection.unavailable));

  return () => {
    const report = sweepRunDir(runDir);
    if (report.killed.length > 0) {
      throw new Error(
        `leak: ${report.killed.length} QEMU process(es) outlived the test run and were killed now: ${report.killed
          .map((k) => `pid ${k.pid} (${k.pidFile})`)
          .join(", ")}`,
      );
    }
  };
}
