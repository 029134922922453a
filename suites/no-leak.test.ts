// Nothing leaks: a harness process interrupted mid-migration leaves no QEMU and no temp dir.
// The main-job script runs in a child Node process with a migration slowed to stay active; the
// test interrupts it and then looks for the QEMU PIDs and dirs that child reported.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { expect, inject } from "vitest";
import { isAlive, sweepRunDir } from "../harness/qemu/process-registry.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));

interface Started {
  pids: number[];
  dirs: string[];
}

/** Start scripts/migrate.ts slowed down; resolve once its source reports status active. */
async function startSlowMigration(binary: string, runDir: string) {
  const child = execa(
    process.execPath,
    ["--import", "tsx", "scripts/migrate.ts", "--binary", binary, "--max-bandwidth", "40000"],
    {
      cwd: repo,
      env: { QEMU_MIGTEST_RUN_DIR: runDir },
      reject: false,
      all: true,
      buffer: true,
      // Bounded on its own: a script that hangs after the signal fails the test with its output.
      timeout: 60_000,
    },
  );
  const started: Started = { pids: [], dirs: [] };
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`migration never became active; output:\n${output}`)),
      30_000,
    );
    child.all?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      for (const m of output.matchAll(
        /^(source|destination): QEMU \S+ pid (\d+) .* dir (\S+)$/gm,
      )) {
        const pid = Number(m[2]);
        if (!started.pids.includes(pid)) started.pids.push(pid);
        if (m[3] && !started.dirs.includes(m[3])) started.dirs.push(m[3]);
      }
      if (/source migration status: active/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.then((r) => reject(new Error(`script ended before the migration was active:\n${r.all}`)));
  });
  expect(started.pids, "both QEMU PIDs reported").toHaveLength(2);
  for (const pid of started.pids)
    expect(isAlive(pid), `QEMU ${pid} alive mid-migration`).toBe(true);
  return { child, started };
}

async function eventually(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

forEachQemu("no leaks", (b) => {
  test(`Ctrl-C (SIGINT) mid-migration leaves no QEMU and no temp dir ${where(b)}`, async () => {
    const runDir = mkdtempSync(join(inject("runDir"), "sigint-"));
    const { child, started } = await startSlowMigration(b.path, runDir);
    child.kill("SIGINT");
    const result = await child;
    expect(result.timedOut, `the interrupted script did not exit:\n${result.all}`).toBe(false);
    // The harness re-raises the signal after cleaning up, so the exit says SIGINT.
    expect(result.signal, `exit of the interrupted script:\n${result.all}`).toBe("SIGINT");
    for (const pid of started.pids) {
      expect(await eventually(() => !isAlive(pid), 2000), `QEMU pid ${pid} survived SIGINT`).toBe(
        true,
      );
    }
    for (const dir of started.dirs)
      expect(existsSync(dir), `temp dir ${dir} survived SIGINT`).toBe(false);
    rmSync(runDir, { recursive: true, force: true });
  });

  test(`SIGKILL of the harness mid-migration: QEMU dies with its parent, the sweep removes the rest ${where(b)}`, async () => {
    const runDir = mkdtempSync(join(inject("runDir"), "sigkill-"));
    const { child, started } = await startSlowMigration(b.path, runDir);
    child.kill("SIGKILL");
    await child;
    for (const pid of started.pids) {
      expect(
        await eventually(() => !isAlive(pid), 3000),
        `QEMU pid ${pid} survived its parent's SIGKILL`,
      ).toBe(true);
    }
    // A SIGKILLed process cleans nothing: the run-level sweep must.
    expect(
      started.dirs.every((d) => existsSync(d)),
      "dirs are still there before the sweep",
    ).toBe(true);
    // The destination's guest RAM file (the RAM check reads it in place) is inside its dir.
    const ramFiles = started.dirs.map((d) => join(d, "guest.ram")).filter((f) => existsSync(f));
    expect(ramFiles.length, "guest RAM files to sweep, inside the machine dirs").toBeGreaterThan(0);
    const report = sweepRunDir(runDir);
    expect(report.killed, "the sweep found no QEMU left to kill").toEqual([]);
    for (const dir of started.dirs)
      expect(existsSync(dir), `temp dir ${dir} survived the sweep`).toBe(false);
  });
});
