// The errors a QMP client raises, after QEMU's python/qemu/qmp: one base class, so a caller can
// catch everything QMP with one instanceof, and one class per way a conversation goes wrong.

export class QMPError extends Error {
  override name = "QMPError";
}

/** Phase of connect() that failed: the socket itself, the greeting, or qmp_capabilities. */
export type QMPConnectPhase = "connect" | "greeting" | "negotiate";

export class QMPConnectError extends QMPError {
  override name = "QMPConnectError";
  constructor(
    message: string,
    readonly socketPath: string,
    readonly phase: QMPConnectPhase,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export class QMPTimeoutError extends QMPError {
  override name = "QMPTimeoutError";
  constructor(
    message: string,
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(message);
  }
}

export class QMPDisconnectedError extends QMPError {
  override name = "QMPDisconnectedError";
  constructor(
    message: string,
    readonly command?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export class QMPProtocolError extends QMPError {
  override name = "QMPProtocolError";
  constructor(
    message: string,
    /** The offending line (raw text when it was not JSON). */
    readonly received?: unknown,
  ) {
    super(message);
  }
}

/** Raised by get()/waitFor() on an EventListener that was closed while they waited. */
export class QMPListenerClosedError extends QMPError {
  override name = "QMPListenerClosedError";
}

/** QEMU answered a command with an error reply. */
export class ExecuteError extends QMPError {
  override name = "ExecuteError";
  readonly errorClass: string;
  readonly desc: string;
  readonly command: string;
  readonly arguments: Record<string, unknown> | undefined;
  /** The request as sent, with its id. */
  readonly sent: unknown;
  /** The whole error reply. */
  readonly received: unknown;
  constructor(
    clientName: string,
    command: string,
    commandArgs: Record<string, unknown> | undefined,
    sent: unknown,
    received: unknown,
  ) {
    const error = (received as { error?: { class?: unknown; desc?: unknown } }).error ?? {};
    const errorClass = typeof error.class === "string" ? error.class : "UnknownErrorClass";
    const desc = typeof error.desc === "string" ? error.desc : JSON.stringify(error);
    super(`${clientName}: ${describeCommand(command, commandArgs)} failed: ${errorClass}: ${desc}`);
    this.errorClass = errorClass;
    this.desc = desc;
    this.command = command;
    this.arguments = commandArgs;
    this.sent = sent;
    this.received = received;
  }
}

const MAX_ARGS_IN_MESSAGE = 300;

/** A command and its arguments for a message, the arguments cut short when long. */
export function describeCommand(
  command: string,
  args: Record<string, unknown> | undefined,
): string {
  if (args === undefined) return command;
  let text = JSON.stringify(args);
  if (text.length > MAX_ARGS_IN_MESSAGE) text = `${text.slice(0, MAX_ARGS_IN_MESSAGE)}...`;
  return `${command} ${text}`;
}
