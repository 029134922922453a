// A directory where O_DIRECT works, for the `direct-io` migration parameter: tmpfs (/dev/shm,
// where the run's temp dirs live) refuses O_DIRECT with EINVAL, so a disk-backed temp dir is
// made and the flag tried on a file in it. Removed by `release`, and by the process registry
// if the harness dies first.

import { closeSync, constants, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerPath, unregisterPath } from "../qemu/process-registry.ts";

export type DirectIoDir = { dir: string; release: () => void } | { reason: string };

/** Whether `dir`'s file system takes O_DIRECT: undefined when it does, else why not. */
export function directIoRefusal(dir: string): string | undefined {
  const probe = join(dir, "o-direct-probe");
  try {
    closeSync(openSync(probe, constants.O_CREAT | constants.O_WRONLY | constants.O_DIRECT, 0o600));
    return undefined;
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    return `open(O_DIRECT) in ${dir} fails with ${e.code ?? e.message}`;
  } finally {
    rmSync(probe, { force: true });
  }
}

/** A fresh disk-backed dir under the OS temp dir where O_DIRECT works, or why there is none. */
export function directIoDir(parent = tmpdir()): DirectIoDir {
  const dir = mkdtempSync(join(parent, "qmt-dio-"));
  registerPath(dir);
  const release = () => {
    rmSync(dir, { recursive: true, force: true });
    unregisterPath(dir);
  };
  const refusal = directIoRefusal(dir);
  if (refusal) {
    release();
    return { reason: `${refusal}: no file system here supports O_DIRECT for direct-io` };
  }
  return { dir, release };
}
