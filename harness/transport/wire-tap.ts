// A loopback tcp relay that keeps what it forwards: the source connects to it (through the
// pair's `outgoingUri` seam), it connects to the destination once per connection and copies
// both ways, recording the source -> destination bytes. For a check on the wire itself (a TLS
// migration must not carry guest memory in the clear); the fault proxy breaks streams, this one
// only watches them.

import { createConnection, createServer, type Server, type Socket } from "node:net";

export class WireTap {
  /** Source -> destination bytes of every connection, in arrival order per connection. */
  private readonly upstream: Buffer[][] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly uri: string,
  ) {}

  /** Listen on a free loopback port and forward each connection to `target` (tcp:HOST:PORT). */
  static async start(target: string): Promise<WireTap> {
    const m = /^tcp:([^:]+):(\d+)$/.exec(target);
    if (!m) throw new Error(`WireTap forwards to tcp:HOST:PORT, not ${JSON.stringify(target)}`);
    const [, host, port] = m as unknown as [string, string, string];
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    const own = typeof address === "object" && address ? address.port : 0;
    const tap = new WireTap(server, `tcp:127.0.0.1:${own}`);
    server.on("connection", (from) => tap.relay(from, host, Number(port)));
    return tap;
  }

  private relay(from: Socket, host: string, port: number): void {
    const chunks: Buffer[] = [];
    this.upstream.push(chunks);
    const to = createConnection({ host, port });
    for (const s of [from, to]) {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      // A reset on one side ends the other: the migration reports it, not this relay.
      s.on("error", () => (s === from ? to : from).destroy());
    }
    from.on("data", (d: Buffer) => chunks.push(d));
    from.pipe(to);
    to.pipe(from);
  }

  /** Connections accepted so far. */
  get connections(): number {
    return this.upstream.length;
  }

  /** Source -> destination bytes so far, over all connections. */
  get bytes(): number {
    return this.upstream.reduce((n, c) => n + c.reduce((m, b) => m + b.length, 0), 0);
  }

  /** Which of `needles` occur in some connection's source -> destination stream. */
  found(needles: readonly Buffer[]): Buffer[] {
    const streams = this.upstream.map((c) => Buffer.concat(c));
    return needles.filter((n) => streams.some((s) => s.includes(n)));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
