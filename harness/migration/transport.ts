// How a migration travels from source to destination. Each kind says what the destination
// listens on and what URI the source is given; exec, file, fd and the `channels` argument of
// `migrate`/`migrate-incoming` are further members of this union (and cases of incomingUri).

import { createServer } from "node:net";
import { join } from "node:path";

export type Transport =
  /** A loopback tcp socket; a free port unless one is given. */
  | { kind: "tcp"; port?: number }
  /** A unix socket in the destination's own dir. */
  | { kind: "unix" }
  /** A loopback port nobody listens on: the destination is never told to listen. */
  | { kind: "tcp-nobody-listening" };

export type TransportKind = Transport["kind"];

/** The URI the destination listens on (undefined: it does not listen) and the source's. */
export interface TransportUris {
  incoming?: string;
  outgoing: string;
}

/** A port chosen here may be taken before QEMU binds it: how often to pick another. */
export function bindAttempts(t: Transport): number {
  return t.kind === "tcp" && t.port === undefined ? 5 : 1;
}

export async function transportUris(t: Transport, destinationDir: string): Promise<TransportUris> {
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
  }
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
