// A scriptable stand-in for a QEMU QMP monitor, for unit tests of the QMP client only.
// Unix socket, one client at a time; it sends a greeting, answers qmp_capabilities itself, answers
// commands that have a handler, and holds every other command until the test replies to it.
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";

export type QMPRequest = Record<string, unknown> & {
  execute?: string;
  "exec-oob"?: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
};

/** What a handler returns: a `return` value, an error, or "hold" to reply later by hand. */
export type FakeReply = { return: unknown } | { error: { class: string; desc: string } } | "hold";

export interface FakeQMPServerOptions {
  /** Capabilities offered in the greeting (default ["oob"], like QEMU 7.2). */
  capabilities?: string[];
  version?: { major: number; minor: number; micro: number };
  /** false: accept connections but never greet (the client must time out). */
  greet?: boolean;
}

export class FakeQMPServer {
  /** Every parsed message the client sent, qmp_capabilities included. */
  readonly received: QMPRequest[] = [];
  /** Arguments of the last qmp_capabilities ({} when it came without arguments). */
  negotiated: Record<string, unknown> | undefined;
  private readonly handlers = new Map<string, (msg: QMPRequest) => FakeReply>();
  private readonly held: QMPRequest[] = [];
  private heldWaiters: ((msg: QMPRequest) => void)[] = [];
  private client: Socket | undefined;
  private buffer = "";

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly options: FakeQMPServerOptions,
  ) {
    server.on("connection", (sock) => this.onConnection(sock));
  }

  static async listen(path: string, options: FakeQMPServerOptions = {}): Promise<FakeQMPServer> {
    const server = createServer();
    const fake = new FakeQMPServer(server, path, options);
    server.listen(path);
    await once(server, "listening");
    return fake;
  }

  /** Replies to `command` automatically from now on. */
  handle(command: string, handler: (msg: QMPRequest) => FakeReply): void {
    this.handlers.set(command, handler);
  }

  /** The next command with no handler (held for a manual reply), in arrival order. */
  nextCommand(timeoutMs = 2000): Promise<QMPRequest> {
    const queued = this.held.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const waiter = (msg: QMPRequest) => {
        clearTimeout(timer);
        resolve(msg);
      };
      const timer = setTimeout(() => {
        this.heldWaiters = this.heldWaiters.filter((w) => w !== waiter);
        reject(new Error(`fake QMP server: no command within ${timeoutMs} ms`));
      }, timeoutMs);
      this.heldWaiters.push(waiter);
    });
  }

  reply(request: QMPRequest, value: unknown = {}): void {
    this.send({ return: value, id: request.id });
  }

  replyError(request: QMPRequest, errorClass: string, desc: string): void {
    this.send({ id: request.id, error: { class: errorClass, desc } });
  }

  sendEvent(event: string, data?: Record<string, unknown>): void {
    const now = Date.now();
    const timestamp = { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 };
    this.send(data === undefined ? { event, timestamp } : { event, data, timestamp });
  }

  send(msg: unknown): void {
    this.sendRaw(`${JSON.stringify(msg)}\r\n`); // QEMU ends lines with CRLF
  }

  /** Writes text as is: for split, coalesced or malformed messages. */
  sendRaw(text: string | Buffer): void {
    if (this.client === undefined) throw new Error("fake QMP server: no client connected");
    this.client.write(text);
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  /** Waits until a client is connected (and greeted, if greeting). */
  async waitForClient(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.client === undefined) {
      if (Date.now() > deadline) throw new Error("fake QMP server: no client connected");
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Closes the client's connection abruptly, as a crashing QEMU would. */
  dropClient(): void {
    this.client?.destroy();
    this.client = undefined;
  }

  async close(): Promise<void> {
    this.dropClient();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(sock: Socket) {
    this.client?.destroy(); // QEMU serves one monitor client at a time
    this.client = sock;
    this.buffer = "";
    sock.setEncoding("utf8");
    sock.on("error", () => {}); // the client going away is part of the tests
    sock.on("close", () => {
      if (this.client === sock) this.client = undefined;
    });
    sock.on("data", (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line !== "") this.onRequest(JSON.parse(line) as QMPRequest);
      }
    });
    if (this.options.greet === false) return;
    const version = this.options.version ?? { major: 7, minor: 2, micro: 22 };
    this.send({
      QMP: {
        version: { qemu: version, package: "fake-qmp-server" },
        capabilities: this.options.capabilities ?? ["oob"],
      },
    });
  }

  private onRequest(msg: QMPRequest) {
    this.received.push(msg);
    const command = msg.execute ?? msg["exec-oob"];
    if (command === "qmp_capabilities") {
      this.negotiated = msg.arguments ?? {};
      this.reply(msg, {});
      return;
    }
    const handler = command === undefined ? undefined : this.handlers.get(command);
    const reply = handler?.(msg) ?? "hold";
    if (reply === "hold") {
      const waiter = this.heldWaiters.shift();
      if (waiter) waiter(msg);
      else this.held.push(msg);
      return;
    }
    this.send({ ...reply, id: msg.id });
  }
}
