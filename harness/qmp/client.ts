// A QMP client: one Unix socket to one QEMU monitor, newline-delimited JSON, replies matched by id.
// Shaped after QEMU's python/qemu/qmp (runstate, kept greeting, oob negotiation, ExecuteError,
// EventListener), plus what the harness needs on top: typed replies and a timeout on every wait.
import { createConnection, type Socket } from "node:net";
import { pushBounded } from "../util/bounded.ts";
import {
  describeCommand,
  ExecuteError,
  QMPConnectError,
  type QMPConnectPhase,
  QMPDisconnectedError,
  QMPError,
  QMPProtocolError,
  QMPTimeoutError,
} from "./errors.ts";
import { type EventFilter, EventListener, type ListenerOwner } from "./event-listener.ts";
import type { QMPEvent, VersionInfo } from "./qapi.ts";

export type Runstate = "idle" | "connecting" | "running" | "disconnecting";

export interface QMPGreeting {
  QMP: { version: VersionInfo; capabilities: string[] };
}

export interface ExecuteOptions {
  /** Default: the client's defaultTimeoutMs (30 s unless set). */
  timeoutMs?: number;
  /** Send as `exec-oob` (out-of-band); only allowed when oob was negotiated. */
  oob?: boolean;
}

export interface QMPClientOptions {
  /** Which QEMU this is ("source", "destination"): the first word of every error message. */
  name?: string;
  defaultTimeoutMs?: number;
  /** How many events the client keeps in `events` (default 1000). */
  eventHistory?: number;
  /** Transcript hook: every message sent and every parsed message received, in wire order. */
  onMessage?: (direction: "sent" | "received", msg: unknown) => void;
  /** Called for every protocol error (they are also kept in `protocolErrors`). */
  onProtocolError?: (error: QMPProtocolError) => void;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_HISTORY = 1000;
const MAX_PROTOCOL_ERRORS = 100;

interface Pending {
  command: string;
  arguments: Record<string, unknown> | undefined;
  sent: Record<string, unknown>;
  sentAt: number;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: Error) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Settled early (e.g. socket closed before anyone awaits): not an unhandled rejection.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** Rejects with the result of onTimeout() unless `promise` settles within ms. */
async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isGreeting(msg: Record<string, unknown>): msg is Record<string, unknown> & QMPGreeting {
  const qmp = msg.QMP;
  if (!isObject(qmp) || !Array.isArray(qmp.capabilities) || !isObject(qmp.version)) return false;
  const qemu = qmp.version.qemu;
  return isObject(qemu) && typeof qemu.major === "number" && typeof qemu.minor === "number";
}

/**
 * One QMP connection. Single use: once a connection that reached "running" ends (or disconnect()
 * is called), make a new client. A failed connect() leaves it idle, so connect() may be retried.
 */
const RAW_REPLIES = new WeakMap<object, string>();

/**
 * The text QEMU sent for a reply object returned by execute(): integers beyond 2^53 in it can be
 * read exactly there (JSON.parse rounds them), e.g. a parameter QEMU read back as a wrapped uint64.
 */
export function rawReplyText(reply: object): string | undefined {
  return RAW_REPLIES.get(reply);
}

export class QMPClient {
  readonly name: string;
  readonly defaultTimeoutMs: number;
  /** Bounded history of every event received, most recent last. */
  readonly events: QMPEvent[] = [];
  /** Replies without a known id, non-JSON lines, unexpected messages (most recent last). */
  readonly protocolErrors: QMPProtocolError[] = [];
  /** Resolves when the connection ends for any reason; never rejects. */
  readonly closed: Promise<void>;

  private state: Runstate = "idle";
  private finished = false;
  private disconnectRequested = false;
  private socket: Socket | undefined;
  private socketError: Error | undefined;
  private buffer = "";
  private counter = 0;
  private readonly pending = new Map<string, Pending>();
  // Ids of commands that timed out: their late replies are dropped without complaint.
  private readonly abandoned = new Set<string>();
  private readonly listeners = new Set<EventListener>();
  private readonly eventHistory: number;
  private readonly onMessage: QMPClientOptions["onMessage"];
  private readonly onProtocolError: QMPClientOptions["onProtocolError"];
  private greetingMessage: QMPGreeting | undefined;
  private greetingWait: Deferred<QMPGreeting> | undefined;
  private negotiated: string[] = [];
  private reason: string | undefined;
  private resolveClosed!: () => void;

  constructor(options: QMPClientOptions = {}) {
    this.name = options.name ?? "qmp";
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.eventHistory = options.eventHistory ?? DEFAULT_HISTORY;
    this.onMessage = options.onMessage;
    this.onProtocolError = options.onProtocolError;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  get runstate(): Runstate {
    return this.state;
  }

  get greeting(): QMPGreeting {
    if (this.greetingMessage === undefined) {
      throw new QMPError(`${this.name}: no QMP greeting yet (runstate ${this.state})`);
    }
    return this.greetingMessage;
  }

  get version(): VersionInfo {
    return this.greeting.QMP.version;
  }

  /** Capabilities enabled by qmp_capabilities (["oob"] when QEMU offered it). */
  get capabilities(): readonly string[] {
    return this.negotiated;
  }

  /** Why the connection ended; undefined while connected or before connect(). */
  get closeReason(): string | undefined {
    return this.finished ? (this.reason ?? "disconnected") : undefined;
  }

  /** One attempt: connect, read the greeting, negotiate (enabling oob when offered). */
  async connect(socketPath: string, options: { timeoutMs: number }): Promise<void> {
    if (this.finished) {
      throw new QMPError(
        `${this.name}: this QMPClient was already used and is closed (${this.closeReason}); create a new one`,
      );
    }
    if (this.state !== "idle") {
      throw new QMPError(`${this.name}: connect() called while ${this.state}`);
    }
    const { timeoutMs } = options;
    const deadline = Date.now() + timeoutMs;
    const remaining = () => deadline - Date.now();
    this.state = "connecting";
    this.socketError = undefined;
    this.buffer = "";
    const connected = deferred<void>();
    const greeting = deferred<QMPGreeting>();
    this.greetingWait = greeting;
    const sock = createConnection({ path: socketPath });
    this.socket = sock;
    sock.setEncoding("utf8"); // a StringDecoder: multi-byte characters split across chunks survive
    sock.on("connect", () => connected.resolve());
    sock.on("data", (chunk: string) => this.onData(sock, chunk));
    sock.on("error", (error) => {
      this.socketError ??= error;
    });
    sock.on("close", () => {
      const cause = this.socketCloseCause();
      connected.reject(new Error(cause));
      greeting.reject(new Error(`socket closed before the greeting (${cause})`));
      this.onSocketClosed(sock, cause);
    });

    let phase: QMPConnectPhase = "connect";
    try {
      await withTimeout(
        connected.promise,
        remaining(),
        () => new Error(`could not connect within ${timeoutMs} ms`),
      );
      phase = "greeting";
      await withTimeout(
        greeting.promise,
        remaining(),
        () => new Error(`no QMP greeting within ${timeoutMs} ms`),
      );
      phase = "negotiate";
      const offered = this.greeting.QMP.capabilities;
      const enable = offered.includes("oob") ? ["oob"] : [];
      await this.send(
        "qmp_capabilities",
        enable.length > 0 ? { enable } : undefined,
        Math.max(1, remaining()),
        false,
      );
      this.negotiated = enable;
      this.state = "running";
    } catch (error) {
      const cause = error instanceof Error ? error : new Error(String(error));
      this.abortConnect(sock);
      const what = {
        connect: `cannot connect to QMP socket ${socketPath}`,
        greeting: `connected to QMP socket ${socketPath} but got no greeting`,
        negotiate: `QMP capability negotiation on ${socketPath} failed`,
      }[phase];
      const detail = this.disconnectRequested ? "disconnect() was called" : cause.message;
      if (this.disconnectRequested) this.finish("disconnect() was called while connecting");
      throw new QMPConnectError(`${this.name}: ${what}: ${detail}`, socketPath, phase, { cause });
    } finally {
      this.greetingWait = undefined;
    }
  }

  /** Runs a command and resolves with its `return` member. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: ExecuteOptions = {},
  ): Promise<T> {
    const desc = describeCommand(command, args);
    if (this.state !== "running") {
      if (this.finished) {
        return Promise.reject(
          new QMPDisconnectedError(
            `${this.name}: cannot execute ${desc}: QEMU connection is gone (${this.closeReason})`,
            command,
          ),
        );
      }
      return Promise.reject(
        new QMPError(`${this.name}: cannot execute ${desc}: not connected (${this.state})`),
      );
    }
    if (options.oob && !this.negotiated.includes("oob")) {
      return Promise.reject(
        new QMPError(`${this.name}: cannot execute ${desc} out-of-band: oob was not negotiated`),
      );
    }
    return this.send(command, args, options.timeoutMs ?? this.defaultTimeoutMs, !!options.oob);
  }

  /** human-monitor-command: runs an HMP command line and returns what HMP printed. */
  hmp(commandLine: string, options?: ExecuteOptions): Promise<string> {
    return this.execute<string>("human-monitor-command", { "command-line": commandLine }, options);
  }

  /** A new listener for events passing filter (event name, list of names, or predicate). */
  listen(filter?: EventFilter, options: { history?: number } = {}): EventListener {
    const owner: ListenerOwner = {
      name: this.name,
      defaultTimeoutMs: this.defaultTimeoutMs,
      closeReason: () => this.closeReason,
      detach: (l) => this.listeners.delete(l),
    };
    const listener = new EventListener(owner, filter, options.history ?? DEFAULT_HISTORY);
    this.listeners.add(listener);
    return listener;
  }

  /** Idempotent. Pending commands reject with QMPDisconnectedError; resolves once closed. */
  async disconnect(): Promise<void> {
    this.disconnectRequested = true;
    if (this.finished) return this.closed;
    if (this.state === "idle") {
      this.finish("disconnect() was called");
      return this.closed;
    }
    if (this.state === "running") this.state = "disconnecting";
    // The socket's close handler does the rest (also while connecting: connect() then fails).
    // While connecting, connect() fails and finishes the client; otherwise the close handler does.
    this.socket?.destroy();
    return this.closed;
  }

  private send<T>(
    command: string,
    args: Record<string, unknown> | undefined,
    timeoutMs: number,
    oob: boolean,
  ): Promise<T> {
    const sock = this.socket;
    const id = `__qmp#${String(++this.counter).padStart(5, "0")}`;
    const msg: Record<string, unknown> = { [oob ? "exec-oob" : "execute"]: command };
    if (args !== undefined) msg.arguments = args;
    msg.id = id;
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = {
        command,
        arguments: args,
        sent: msg,
        sentAt: Date.now(),
        resolve: resolve as (value: unknown) => void,
        reject,
        timer: setTimeout(() => {
          this.pending.delete(id);
          this.abandoned.add(id);
          const what = `reply to ${describeCommand(command, args)}`;
          reject(
            new QMPTimeoutError(
              `${this.name}: no reply to ${describeCommand(command, args)} within ${timeoutMs} ms`,
              what,
              timeoutMs,
            ),
          );
        }, timeoutMs),
      };
      this.pending.set(id, pending);
      this.record("sent", msg);
      // A write error surfaces as the socket's "error" then "close": that rejects pending.
      sock?.write(`${JSON.stringify(msg)}\n`);
    });
  }

  private onData(sock: Socket, chunk: string) {
    if (sock !== this.socket) return;
    this.buffer += chunk;
    let newline = this.buffer.indexOf("\n");
    while (newline >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line !== "") this.onLine(line);
      // A handler may have torn the connection down (e.g. bad greeting).
      if (sock !== this.socket) return;
      newline = this.buffer.indexOf("\n");
    }
  }

  private onLine(line: string) {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch (error) {
      this.protocolError(`not JSON (${(error as Error).message}): ${line.slice(0, 200)}`, line);
      return;
    }
    if (isObject(msg) && isObject(msg.return)) RAW_REPLIES.set(msg.return, line);
    this.record("received", msg);
    if (!isObject(msg)) {
      this.protocolError(`expected a JSON object, got ${line.slice(0, 200)}`, msg);
      return;
    }
    if (this.greetingWait !== undefined && this.greetingMessage === undefined) {
      if (isGreeting(msg)) {
        // Set now, not after connect() resumes: a coalesced next line must not count as greeting.
        this.greetingMessage = msg;
        this.greetingWait.resolve(msg);
      } else
        this.greetingWait.reject(new Error(`expected the QMP greeting, got ${line.slice(0, 200)}`));
      return;
    }
    if ("event" in msg) {
      this.onEvent(msg as unknown as QMPEvent);
      return;
    }
    if ("return" in msg || "error" in msg) {
      this.onReply(msg);
      return;
    }
    this.protocolError(`unexpected message: ${line.slice(0, 200)}`, msg);
  }

  private onEvent(event: QMPEvent) {
    pushBounded(this.events, event, this.eventHistory);
    for (const listener of this.listeners) listener.deliver(event);
  }

  private onReply(msg: Record<string, unknown>) {
    const id = msg.id;
    if (typeof id !== "string" || !this.pending.has(id)) {
      if (typeof id === "string" && this.abandoned.delete(id)) return; // late reply: dropped
      const what =
        id === undefined ? "reply without id" : `reply with unknown id ${JSON.stringify(id)}`;
      this.protocolError(`${what}: ${JSON.stringify(msg).slice(0, 300)}`, msg);
      return;
    }
    const pending = this.pending.get(id) as Pending;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ("error" in msg) {
      pending.reject(
        new ExecuteError(this.name, pending.command, pending.arguments, pending.sent, msg),
      );
    } else {
      pending.resolve(msg.return);
    }
  }

  private protocolError(message: string, received: unknown) {
    const error = new QMPProtocolError(`${this.name}: QMP protocol error: ${message}`, received);
    pushBounded(this.protocolErrors, error, MAX_PROTOCOL_ERRORS);
    try {
      this.onProtocolError?.(error);
    } catch {
      // A broken observer must not break the connection.
    }
  }

  private record(direction: "sent" | "received", msg: unknown) {
    try {
      this.onMessage?.(direction, msg);
    } catch {
      // A broken transcript recorder must not break the connection.
    }
  }

  private socketCloseCause(): string {
    if (this.disconnectRequested) return "disconnect() was called";
    if (this.socketError !== undefined) return `socket error: ${this.socketError.message}`;
    return "QEMU closed the connection";
  }

  private onSocketClosed(sock: Socket, cause: string) {
    if (sock !== this.socket) return; // a stale socket from a failed connect()
    this.socket = undefined;
    this.failPending(cause);
    if (this.state === "running" || this.state === "disconnecting") this.finish(cause);
  }

  private failPending(cause: string) {
    const now = Date.now();
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      clearTimeout(pending.timer);
      const desc = describeCommand(pending.command, pending.arguments);
      const message = this.disconnectRequested
        ? `${this.name}: ${desc} was still pending when disconnect() was called`
        : `${this.name}: QEMU went away while ${desc} was pending (${cause}, after ${now - pending.sentAt} ms)`;
      pending.reject(
        new QMPDisconnectedError(message, pending.command, {
          cause: this.socketError ?? undefined,
        }),
      );
    }
  }

  private abortConnect(sock: Socket) {
    if (this.socket === sock) this.socket = undefined;
    sock.destroy();
    this.failPending(this.socketCloseCause());
    this.greetingMessage = undefined;
    this.state = "idle";
  }

  private finish(reason: string) {
    if (this.finished) return;
    this.finished = true;
    this.reason = reason;
    this.state = "idle";
    this.abandoned.clear();
    for (const listener of this.listeners) listener.connectionClosed(reason);
    this.resolveClosed();
  }
}
