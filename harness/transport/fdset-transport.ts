// The fdset transport's descriptors: one migration file, opened here write-only for the source
// and read-only for the destination, inherited by each QEMU at launch as fd 3 and registered with
// `-add-fd fd=3,set=N` — how libvirt hands QEMU a file it opened itself. For `fd:N` the
// destination also inherits one end of a unix socket pair as fd 4, and once the source completed
// the harness streams the file into the other end, as libvirt's iohelper does on restore (newer
// QEMUs refuse `fd:` on a regular file). Node cannot send a descriptor over the QMP socket (no
// SCM_RIGHTS in `net`), so `add-fd`/`getfd` over QMP are out; inheritance through spawn's stdio
// array is plain POSIX and needs no native module.

import { closeSync, createReadStream, openSync, rmSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { FDSET } from "./transport.ts";

export interface FdsetSide {
  /** Inherited as the QEMU's fds 3 (FDSET.childFd), 4 (FDSET.rawFd), ... */
  fds: (number | Socket)[];
  /** `-add-fd` registering fd 3 in fdset FDSET.id. */
  args: string[];
}

export interface FdsetFiles {
  path: string;
  source: FdsetSide;
  destination: FdsetSide;
  /** Stream the migration file into the destination's fd 4, then end it (EOF). */
  feed(): Promise<void>;
  /** Close this process's copies of what the QEMUs inherited (they keep theirs). Idempotent. */
  closeInherited(): void;
  /** Close everything, the feeding end included. Idempotent. */
  close(): void;
}

/** Opaque strings QEMU reports back in query-fdsets: which side's descriptor it holds. */
export const FDSET_OPAQUE = { source: "migration-out", destination: "migration-in" } as const;

/** A connected pair of unix sockets (Node has no socketpair): a listener in `dir`, gone after. */
async function socketPair(dir: string): Promise<[Socket, Socket]> {
  const path = join(dir, "fd-feed.sock");
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  try {
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const near = createConnection(path);
    await new Promise<void>((resolve, reject) => {
      near.once("connect", () => resolve());
      near.once("error", reject);
    });
    const far = await accepted;
    // The QEMU reads this end; nothing here may consume its bytes.
    far.pause();
    return [near, far];
  } finally {
    server.close();
    rmSync(path, { force: true });
  }
}

export async function openFdsetFiles(dir: string): Promise<FdsetFiles> {
  const path = join(dir, "migration-fdset.bin");
  // The reader is opened before anything is written: it sees the source's writes (same inode).
  const out = openSync(path, "w", 0o600);
  const inn = openSync(path, "r");
  const [near, far] = await socketPair(dir).catch((error: unknown) => {
    closeSync(out);
    closeSync(inn);
    throw error;
  });
  // A reset from the QEMU's side (it stopped reading) is the migration's to report.
  near.on("error", () => undefined);
  far.on("error", () => undefined);
  let fds = [out, inn];
  const side = (inherited: (number | Socket)[], opaque: string): FdsetSide => ({
    fds: inherited,
    args: ["-add-fd", `fd=${FDSET.childFd},set=${FDSET.id},opaque=${opaque}`],
  });
  const closeInherited = () => {
    for (const fd of fds.splice(0)) closeSync(fd);
    far.destroy();
  };
  return {
    path,
    source: side([out], FDSET_OPAQUE.source),
    destination: side([inn, far], FDSET_OPAQUE.destination),
    feed: () => pipeline(createReadStream(path), near),
    closeInherited,
    close() {
      closeInherited();
      near.destroy();
      fds = [];
    },
  };
}
