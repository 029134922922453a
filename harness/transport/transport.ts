// How a migration travels from source to destination. Each kind says what the destination
// listens on (or loads from) and what the source is given: a URI, or the `channels` argument of
// `migrate`/`migrate-incoming` (QEMU 9.0+). Stream-to-storage kinds (exec, file, fdset) load on
// the destination only once the source completed: the save/restore flow.

import { createServer } from "node:net";
import { join } from "node:path";

/** One entry of `migrate`/`migrate-incoming`'s `channels` (qapi/migration.json MigrationChannel). */
export interface MigrationChannel {
  "channel-type": "main";
  addr:
    | { transport: "socket"; type: "inet"; host: string; port: string }
    | { transport: "socket"; type: "unix"; path: string }
    | { transport: "file"; filename: string; offset?: number };
}

/** The address arguments of one `migrate` or `migrate-incoming` command. */
export interface AddressArguments {
  uri?: string;
  channels?: MigrationChannel[];
}

export type Transport =
  /** A loopback tcp socket; a free port unless one is given. */
  | { kind: "tcp"; port?: number }
  /** A unix socket in the destination's own dir. */
  | { kind: "unix" }
  /** A loopback port nobody listens on: the destination is never told to listen. */
  | { kind: "tcp-nobody-listening" }
  /** `exec:cat > F` out, `exec:cat F` in once the source completed. */
  | { kind: "exec" }
  /**
   * `file:PATH[,offset=N]` (the same offset both ways); loaded once the source completed. The
   * file goes in the destination's dir unless `directory` (e.g. a disk-backed dir for O_DIRECT).
   * A string offset is put in the URI as it is (a bad one is QEMU's to refuse).
   */
  | { kind: "file"; offset?: number | string; directory?: string }
  /**
   * The migration file as descriptors inherited at launch and registered with `-add-fd` (as
   * libvirt hands QEMU its files): the source writes `file:/dev/fdset/N` (or, `outgoing:
   * "exec"`, `exec:cat > F` into the same file, for a QEMU without file migration); the
   * destination reads `fd:N` (`incoming: "fd"`, the default) or `file:/dev/fdset/N`.
   */
  | { kind: "fdset"; incoming?: "fd" | "fdset"; outgoing?: "fdset" | "exec" }
  /**
   * `channels` instead of `uri` (QEMU 9.0+), a tcp socket unless `address` says otherwise.
   * `give` asks for a malformed command on purpose: both `uri` and `channels`, or neither (QEMU
   * must refuse it).
   */
  | {
      kind: "channels";
      address?: "tcp" | "unix" | "file";
      give?: { command: "migrate" | "migrate-incoming"; arguments: "uri-and-channels" | "neither" };
    };

export type TransportKind = Transport["kind"];

/** What the destination listens on (none: it does not listen) and what the source is given. */
export interface TransportUris {
  incoming?: string;
  outgoing: string;
  /** migrate-incoming's and migrate's address arguments, when not just `{ uri }`. */
  incomingArguments?: AddressArguments;
  outgoingArguments?: AddressArguments;
  /** The destination loads only after the source completed (a file or a pipe into one). */
  incomingAfterOutgoing?: boolean;
  /**
   * A file that exists once the stream is whole on disk: QEMU reports `completed` when it has
   * written into exec's pipe, before `cat` has necessarily written it all to the file.
   */
  incomingReady?: string;
  /** The destination's descriptor is a socket the harness streams the file into (fdset, fd:). */
  incomingFed?: boolean;
}

/** exec's outgoing command: the copy, then a marker once `cat` has written everything. */
function execInto(file: string): { outgoing: string; incomingReady: string } {
  // QEMU runs it with /bin/sh -c; the paths are ours (temp dirs, no quoting needed).
  return { outgoing: `exec:cat > ${file} && touch ${file}.done`, incomingReady: `${file}.done` };
}

/**
 * Where the fdset transport's inherited descriptors sit in each QEMU: `childFd` goes into fdset
 * `id` (-add-fd keeps its own dup and closes the original, so that number is reused by QEMU);
 * the destination also inherits `rawFd`, in no fdset, for `fd:N`: a socket the harness streams
 * the migration file into once the source completed.
 */
export const FDSET = { id: 1, childFd: 3, rawFd: 4 } as const;

/** The migration file of the storage transports. */
export function migrationFilePath(t: Transport, destinationDir: string): string {
  const dir = t.kind === "file" && t.directory ? t.directory : destinationDir;
  return join(dir, "migration.bin");
}

/** A port chosen here may be taken before QEMU binds it: how often to pick another. */
export function bindAttempts(t: Transport): number {
  if (t.kind === "channels") return (t.address ?? "tcp") === "tcp" ? 5 : 1;
  return t.kind === "tcp" && t.port === undefined ? 5 : 1;
}

export async function transportUris(
  t: Transport,
  destinationDir: string,
  /** The fdset transport's file (the pair opened it at launch). */
  fdsetFile?: string,
): Promise<TransportUris> {
  switch (t.kind) {
    case "unix": {
      const uri = `unix:${join(destinationDir, "migration.sock")}`;
      return { incoming: uri, outgoing: uri };
    }
    case "tcp": {
      if (t.port !== undefined) await assertPortFree(t.port);
      const uri = `tcp:127.0.0.1:${t.port ?? (await freeLoopbackPort())}`;
      return { incoming: uri, outgoing: uri };
    }
    case "tcp-nobody-listening":
      return { outgoing: `tcp:127.0.0.1:${await freeLoopbackPort()}` };
    case "exec": {
      const file = migrationFilePath(t, destinationDir);
      return { ...execInto(file), incoming: `exec:cat ${file}`, incomingAfterOutgoing: true };
    }
    case "file": {
      const offset = t.offset === undefined ? "" : `,offset=${t.offset}`;
      const uri = `file:${migrationFilePath(t, destinationDir)}${offset}`;
      return { outgoing: uri, incoming: uri, incomingAfterOutgoing: true };
    }
    case "fdset": {
      const fdset = `file:/dev/fdset/${FDSET.id}`;
      if (t.outgoing === "exec" && !fdsetFile) {
        throw new TransportError("the fdset transport's file is opened by the pair at launch");
      }
      return {
        ...(t.outgoing === "exec" && fdsetFile ? execInto(fdsetFile) : { outgoing: fdset }),
        incoming: t.incoming === "fdset" ? fdset : `fd:${FDSET.rawFd}`,
        incomingFed: t.incoming !== "fdset",
        incomingAfterOutgoing: true,
      };
    }
    case "channels":
      return channelUris(t, destinationDir);
  }
}

async function channelUris(
  t: Extract<Transport, { kind: "channels" }>,
  destinationDir: string,
): Promise<TransportUris> {
  let addr: MigrationChannel["addr"];
  let uri: string;
  if ((t.address ?? "tcp") === "tcp") {
    const port = String(await freeLoopbackPort());
    addr = { transport: "socket", type: "inet", host: "127.0.0.1", port };
    uri = `tcp:127.0.0.1:${port}`;
  } else if (t.address === "unix") {
    const path = join(destinationDir, "migration.sock");
    addr = { transport: "socket", type: "unix", path };
    uri = `unix:${path}`;
  } else {
    const filename = migrationFilePath(t, destinationDir);
    addr = { transport: "file", filename, offset: 0 };
    uri = `file:${filename}`;
  }
  const channels: MigrationChannel[] = [{ "channel-type": "main", addr }];
  const args = (command: "migrate" | "migrate-incoming"): AddressArguments => {
    if (t.give?.command !== command) return { channels };
    return t.give.arguments === "neither" ? {} : { uri, channels };
  };
  return {
    // What the timeline and results name the address by: the URI the channel is equivalent to.
    incoming: `channels:${uri}`,
    outgoing: `channels:${uri}`,
    incomingArguments: args("migrate-incoming"),
    outgoingArguments: args("migrate"),
    incomingAfterOutgoing: t.address === "file",
  };
}

/** A bad port the user chose. */
export class TransportError extends Error {
  override name = "TransportError";
}

/** A port on 127.0.0.1 that nothing listens on right now. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Fail clearly when a port the user chose is taken. */
export async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", (error: NodeJS.ErrnoException) =>
      reject(
        new TransportError(
          error.code === "EADDRINUSE"
            ? `tcp port ${port} on 127.0.0.1 is already in use by another process; choose another port or leave it unset to get a free one`
            : `tcp port ${port} on 127.0.0.1 cannot be used: ${error.message}`,
        ),
      ),
    );
    server.listen(port, "127.0.0.1", () => server.close(() => resolve()));
  });
}
