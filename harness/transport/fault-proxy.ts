// A fault proxy on loopback between source and destination: the source connects to it, it
// connects to the destination once per accepted connection (so every multifd channel and the
// postcopy preempt channel go through it too) and forwards both ways. On command it cuts the
// connections (at a byte count of the migration stream or after a time), stalls them (stops
// forwarding, keeps them open), throttles the stream to a byte rate, delays it, or flips one
// byte of it. A real fault on a real socket, unlike migrate-pause.

import { createConnection, createServer, type Server, type Socket } from "node:net";

/** The source -> destination direction is the migration stream; the other is the return path. */
export type Direction = "up" | "down";

interface Chunk {
  data: Buffer;
  arrivedAt: number;
}

export interface ProxyConnection {
  /** In accept order: 0 is the main channel. */
  index: number;
  /** Bytes forwarded source -> destination and back. */
  forwarded: Record<Direction, number>;
  closed: boolean;
  /** Why it ended, when the proxy ended it. */
  endedBy?: string;
}

export interface FaultProxyStats {
  connections: ProxyConnection[];
  /** Bytes forwarded source -> destination over all connections. */
  upBytes: number;
}

const now = () => performance.now();

/** One direction of one connection: a queue drained under the proxy's current faults. */
class Pump {
  private readonly queue: Chunk[] = [];
  private queued = 0;
  private wake: () => void = () => undefined;
  /** Up-direction offset in this connection's stream of the next byte to forward. */
  offset = 0;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly conn: ProxyConnection,
    readonly direction: Direction,
    private readonly from: Socket,
    private readonly to: Socket,
  ) {
    from.on("data", (data: Buffer) => {
      this.queue.push({ data, arrivedAt: now() });
      this.queued += data.length;
      // Backpressure: a stalled or throttled proxy must not buffer the whole guest RAM.
      if (this.queued > 4 * 1024 * 1024) from.pause();
      this.wake();
    });
    from.on("end", () => {
      this.ended = true;
      this.wake();
    });
    void this.run();
  }

  private ended = false;

  poke(): void {
    this.wake();
  }

  private async waitWake(ms?: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
      this.wake = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
    });
    this.wake = () => undefined;
  }

  private async run(): Promise<void> {
    for (;;) {
      if (this.conn.closed) return;
      const head = this.queue[0];
      if (!head) {
        if (this.ended) {
          this.to.end();
          return;
        }
        await this.waitWake();
        continue;
      }
      if (this.proxy.stalled) {
        await this.waitWake();
        continue;
      }
      const wait = head.arrivedAt + this.proxy.delayMs - now();
      if (wait > 0) {
        await this.waitWake(wait);
        continue;
      }
      let data = head.data;
      const rate = this.direction === "up" ? this.proxy.bytesPerSecond : undefined;
      if (rate) {
        // One schedule for every connection: the rate is the link's, not each channel's.
        if (now() < this.proxy.upDue) {
          await this.waitWake(this.proxy.upDue - now());
          continue;
        }
        // Slices of 10 ms worth of the rate; catch-up after a pause capped at one slice.
        data = data.subarray(0, Math.max(1, Math.floor(rate / 100)));
        this.proxy.upDue = Math.max(this.proxy.upDue, now() - 10) + (data.length / rate) * 1000;
      }
      if (this.direction === "up") {
        const cutAt = this.proxy.cutAtUpBytes;
        if (cutAt !== undefined && this.proxy.upBytes + data.length >= cutAt) {
          data = data.subarray(0, Math.max(0, cutAt - this.proxy.upBytes));
          this.send(data);
          this.proxy.cutAll(`cut at ${cutAt} bytes of the migration stream`);
          return;
        }
        data = this.proxy.applyFlip(this.conn.index, this.offset, data);
      }
      this.send(data);
      if (data.length === head.data.length) this.queue.shift();
      else head.data = head.data.subarray(data.length);
      this.queued -= data.length;
      if (this.queued <= 1024 * 1024) this.from.resume();
      if (this.to.writableNeedDrain) {
        await new Promise<void>((r) => {
          this.to.once("drain", r);
          this.to.once("close", r);
        });
      }
    }
  }

  private send(data: Buffer): void {
    if (data.length === 0) return;
    this.to.write(data);
    this.conn.forwarded[this.direction] += data.length;
    if (this.direction === "up") {
      this.offset += data.length;
      this.proxy.upBytes += data.length;
    }
  }
}

/** Where the proxy forwards to: the destination's own listening address. */
export type ProxyTarget = { host: string; port: number } | { path: string };

export function parseProxyTarget(uri: string): ProxyTarget {
  const tcp = /^tcp:([^:]+):(\d+)$/.exec(uri);
  if (tcp?.[1] && tcp[2]) return { host: tcp[1], port: Number(tcp[2]) };
  if (uri.startsWith("unix:")) return { path: uri.slice("unix:".length) };
  throw new Error(`the fault proxy forwards tcp: and unix: URIs only, not ${uri}`);
}

export class FaultProxy {
  stalled = false;
  delayMs = 0;
  bytesPerSecond?: number;
  cutAtUpBytes?: number;
  upBytes = 0;
  /** When the throttled stream may send next (performance.now() ms). */
  upDue = 0;
  readonly connections: ProxyConnection[] = [];
  /** Every event worth a line in a report: connections, faults applied. */
  readonly log: { t: number; what: string }[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly pumps: Pump[] = [];
  private flip?: { connection: number; at: number; mask: number; done: boolean };
  private timers: NodeJS.Timeout[] = [];
  private readonly startedAt = now();
  private closing?: Promise<void>;

  private constructor(
    private readonly server: Server,
    readonly target: ProxyTarget,
    /** The URI to give the source. */
    readonly uri: string,
  ) {}

  /** Listen on a free loopback port and forward every connection to `target` (a QEMU URI). */
  static async start(targetUri: string): Promise<FaultProxy> {
    const target = parseProxyTarget(targetUri);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const proxy = new FaultProxy(server, target, `tcp:127.0.0.1:${port}`);
    server.on("connection", (client) => proxy.accept(client));
    return proxy;
  }

  private note(what: string): void {
    this.log.push({ t: Math.round(now() - this.startedAt), what });
  }

  private accept(client: Socket): void {
    // A connection still in the backlog when close() began (a late multifd channel) must not
    // open a new path to the destination that close() no longer waits for.
    if (this.closing) {
      client.resetAndDestroy();
      return;
    }
    const conn: ProxyConnection = {
      index: this.connections.length,
      forwarded: { up: 0, down: 0 },
      closed: false,
    };
    this.connections.push(conn);
    this.note(`connection ${conn.index} accepted`);
    const server = createConnection(
      "path" in this.target ? { path: this.target.path } : this.target,
    );
    client.setNoDelay(true);
    if (!("path" in this.target)) server.setNoDelay(true);
    for (const s of [client, server]) {
      this.sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", (hadError) => {
        this.sockets.delete(s);
        const other = s === client ? server : client;
        const who = s === client ? "the source" : "the destination";
        // A reset goes through as a reset; an orderly end only after the queue is flushed
        // (the pump ends the other side then).
        if (hadError) other.resetAndDestroy();
        if (!this.sockets.has(other) && !conn.closed) {
          conn.closed = true;
          this.note(`connection ${conn.index} closed (last by ${who})`);
        }
      });
    }
    // The destination going away must reach the source at once, as it would without a proxy in
    // between: else the source keeps streaming into the proxy and can even report completed.
    server.on("end", () => client.resetAndDestroy());
    this.pumps.push(new Pump(this, conn, "up", client, server));
    this.pumps.push(new Pump(this, conn, "down", server, client));
  }

  stats(): FaultProxyStats {
    return {
      connections: this.connections.map((c) => ({ ...c, forwarded: { ...c.forwarded } })),
      upBytes: this.upBytes,
    };
  }

  private pokeAll(): void {
    for (const p of this.pumps) p.poke();
  }

  /** Close every connection now (both ends see a reset), or once the stream reaches a byte count, or after a time. */
  cut(options: { atUpBytes?: number; afterMs?: number } = {}): void {
    if (options.atUpBytes !== undefined) {
      this.cutAtUpBytes = options.atUpBytes;
      this.note(`cut armed at ${options.atUpBytes} bytes of the migration stream`);
      this.pokeAll();
      return;
    }
    if (options.afterMs !== undefined) {
      this.note(`cut armed in ${options.afterMs} ms`);
      this.timers.push(
        setTimeout(() => this.cutAll(`cut after ${options.afterMs} ms`), options.afterMs),
      );
      return;
    }
    this.cutAll("cut");
  }

  /** @internal the pumps call it when a cut point is reached. */
  cutAll(why: string): void {
    this.note(
      `${why}: ${this.connections.filter((c) => !c.closed).length} connection(s) reset, ${this.upBytes} bytes forwarded`,
    );
    for (const c of this.connections) {
      if (!c.closed) {
        c.closed = true;
        c.endedBy = why;
      }
    }
    for (const s of this.sockets) s.resetAndDestroy();
    // New connections are refused from now on too: the network is gone.
    this.server.close();
  }

  /** Stop forwarding in both directions; connections stay open. */
  stall(): void {
    this.stalled = true;
    this.note("stalled");
  }

  release(): void {
    this.stalled = false;
    this.note("released");
    this.pokeAll();
  }

  /** Limit the migration stream (source -> destination, all connections together) to a rate; undefined lifts it. */
  throttle(bytesPerSecond: number | undefined): void {
    if (bytesPerSecond !== undefined && !(bytesPerSecond > 0)) {
      throw new RangeError(`throttle rate must be positive bytes/s, got ${bytesPerSecond}`);
    }
    this.bytesPerSecond = bytesPerSecond;
    this.note(bytesPerSecond ? `throttled to ${bytesPerSecond} B/s` : "throttle lifted");
    this.pokeAll();
  }

  /** Hold every chunk this long after it arrived before forwarding it. */
  delay(ms: number): void {
    this.delayMs = ms;
    this.note(`delay ${ms} ms`);
    this.pokeAll();
  }

  /** XOR `mask` into the byte at offset `at` of connection `connection`'s migration stream. */
  flipByte(at: number, options: { connection?: number; mask?: number } = {}): void {
    this.flip = {
      connection: options.connection ?? 0,
      at,
      mask: options.mask ?? 0xff,
      done: false,
    };
    this.note(
      `byte ${at} of connection ${this.flip.connection} to be flipped (xor 0x${this.flip.mask.toString(16)})`,
    );
  }

  /** Whether the armed flip was applied. */
  get flipped(): boolean {
    return this.flip?.done ?? false;
  }

  /** @internal */
  applyFlip(connection: number, offset: number, data: Buffer): Buffer {
    const f = this.flip;
    if (!f || f.done || f.connection !== connection) return data;
    const i = f.at - offset;
    if (i < 0 || i >= data.length) return data;
    const copy = Buffer.from(data);
    copy[i] = (copy[i] as number) ^ f.mask;
    f.done = true;
    this.note(
      `byte ${f.at} of connection ${connection} flipped: 0x${(data[i] as number).toString(16)} -> 0x${(copy[i] as number).toString(16)}`,
    );
    return copy;
  }

  /** Close the listener and every connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const t of this.timers) clearTimeout(t);
      // Stop accepting first, so no socket appears while the open ones are being closed.
      const listenerClosed = new Promise<void>((r) => this.server.close(() => r()));
      for (const c of this.connections) c.closed = true;
      const closing = [...this.sockets].map(
        (s) => new Promise<void>((r) => (s.closed ? r() : s.once("close", () => r()))),
      );
      for (const s of this.sockets) s.destroy();
      this.pokeAll();
      await Promise.all(closing);
      await listenerClosed;
    })();
    return this.closing;
  }

  /** Whether anything is still open (a leak at pair close). */
  get open(): boolean {
    // A destroyed socket is released even while its "close" event is still queued.
    return this.server.listening || [...this.sockets].some((s) => !s.destroyed);
  }
}
