// The fdset transport's descriptors: one migration file, opened here write-only for the source and
// read-only for the destination, inherited by each QEMU at launch as fd 3 and registered with
// `-add-fd fd=3,set=N` — how libvirt hands QEMU a file it opened itself. Node cannot send a
// descriptor over the QMP socket (no SCM_RIGHTS in `net`), so `add-fd`/`getfd` over QMP are out;
// inheritance through spawn's stdio array is plain POSIX and needs no native module.

import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { FDSET } from "./transport.ts";

export interface FdsetSide {
  /** This process's descriptors, inherited as the QEMU's fds 3 (FDSET.childFd), 4 (FDSET.rawFd). */
  fds: number[];
  /** `-add-fd` registering it in fdset FDSET.id. */
  args: string[];
}

export interface FdsetFiles {
  path: string;
  source: FdsetSide;
  destination: FdsetSide;
  /** Close this process's copies (the QEMUs keep theirs). Idempotent. */
  close(): void;
}

/** Opaque strings QEMU reports back in query-fdsets: which side's descriptor it holds. */
export const FDSET_OPAQUE = { source: "migration-out", destination: "migration-in" } as const;

export function openFdsetFiles(dir: string): FdsetFiles {
  const path = join(dir, "migration-fdset.bin");
  // The reader is opened before anything is written: it sees the source's writes (same inode).
  const out = openSync(path, "w", 0o600);
  const inn = openSync(path, "r");
  // For `fd:N`: -add-fd closes the descriptor it registers (keeping a dup), so `fd:` gets its own.
  const raw = openSync(path, "r");
  const open = [out, inn, raw];
  const side = (fds: number[], opaque: string): FdsetSide => ({
    fds,
    args: ["-add-fd", `fd=${FDSET.childFd},set=${FDSET.id},opaque=${opaque}`],
  });
  return {
    path,
    source: side([out], FDSET_OPAQUE.source),
    destination: side([inn, raw], FDSET_OPAQUE.destination),
    close() {
      for (const fd of open.splice(0)) closeSync(fd);
    },
  };
}
