// Where the harness puts files that QEMU shares with it.

import { existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";

/** /dev/shm when the host has it (tmpfs: guest RAM files cost no disk I/O), else the OS temp dir. */
export function sharedMemoryDir(): string {
  return existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
}

/** A bad QEMU_MIGTEST_RUN_DIR (or parent dir), named with what to do about it. */
export class RunDirError extends Error {
  override name = "RunDirError";
}

/**
 * Where a run's temp dirs go: the caller's choice, else QEMU_MIGTEST_RUN_DIR, else `fallback`.
 * A dir that does not exist or is not a directory is refused here, by name, instead of surfacing
 * as a bare ENOENT from mkdtemp.
 */
export function runParentDir(
  explicit: string | undefined,
  fallback: () => string,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const fromEnv = explicit === undefined ? env.QEMU_MIGTEST_RUN_DIR : undefined;
  const dir = explicit ?? fromEnv ?? fallback();
  const what = fromEnv !== undefined ? `QEMU_MIGTEST_RUN_DIR=${fromEnv}` : `temp dir parent ${dir}`;
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new RunDirError(
      `${what}: no such directory; create it, or unset QEMU_MIGTEST_RUN_DIR to use ${fallback()}`,
    );
  }
  if (!isDir) {
    throw new RunDirError(`${what}: not a directory; point it at a directory (or unset it)`);
  }
  return dir;
}
