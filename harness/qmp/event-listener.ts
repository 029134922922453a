// Events of one QMP connection as a caller waits for them: a filtered queue, a bounded history
// of what matched, and waits that time out saying what did arrive instead.

import { pushBounded } from "../util/bounded.ts";
import { QMPDisconnectedError, QMPListenerClosedError, QMPTimeoutError } from "./errors.ts";
import type { QMPEvent } from "./qapi.ts";

export type EventFilter = string | string[] | ((e: QMPEvent) => boolean);

function describeEvent(e: QMPEvent): string {
  return e.data === undefined ? e.event : `${e.event} ${JSON.stringify(e.data)}`;
}

function toFilter(filter: EventFilter | undefined): (e: QMPEvent) => boolean {
  if (filter === undefined) return () => true;
  if (typeof filter === "function") return filter;
  const names = new Set(typeof filter === "string" ? [filter] : filter);
  return (e) => names.has(e.event);
}

/** What an EventListener needs from its client. */
export interface ListenerOwner {
  readonly name: string;
  readonly defaultTimeoutMs: number;
  /** Why the connection ended; undefined while it may still deliver events. */
  closeReason(): string | undefined;
  detach(listener: EventListener): void;
}

interface Waiter {
  predicate: (e: QMPEvent) => boolean;
  resolve: (e: QMPEvent) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Receives the client's events that pass its filter: a queue for get()/waitFor(), and a bounded
 * history of everything that matched (kept even after get() took an event).
 */
export class EventListener implements AsyncIterable<QMPEvent> {
  readonly history: QMPEvent[] = [];
  private readonly queue: QMPEvent[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly accepts: (e: QMPEvent) => boolean;
  private isClosed = false;

  constructor(
    private readonly owner: ListenerOwner,
    filter: EventFilter | undefined,
    private readonly historyLimit: number,
  ) {
    this.accepts = toFilter(filter);
  }

  /** Events matched but not yet taken by get()/waitFor(). */
  get pending(): readonly QMPEvent[] {
    return this.queue;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** The next queued matching event; waits for one if the queue is empty. */
  get(options: { timeoutMs?: number } = {}): Promise<QMPEvent> {
    return this.waitFor(() => true, { timeoutMs: options.timeoutMs, what: "event" });
  }

  /**
   * The first matching event for which predicate holds, queued ones first. Queued events that
   * do not match stay queued for later get() calls.
   */
  waitFor(
    predicate: (e: QMPEvent) => boolean,
    options: { timeoutMs?: number; what?: string },
  ): Promise<QMPEvent> {
    const what = options.what ?? "matching event";
    const timeoutMs = options.timeoutMs ?? this.owner.defaultTimeoutMs;
    try {
      const index = this.queue.findIndex(predicate);
      if (index >= 0) return Promise.resolve(this.queue.splice(index, 1)[0] as QMPEvent);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.isClosed) {
      return Promise.reject(
        new QMPListenerClosedError(`${this.owner.name}: cannot wait for ${what}: listener closed`),
      );
    }
    const reason = this.owner.closeReason();
    if (reason !== undefined) {
      return Promise.reject(
        new QMPDisconnectedError(
          `${this.owner.name}: cannot wait for ${what}: QEMU connection is gone (${reason})${this.recent()}`,
        ),
      );
    }
    return new Promise<QMPEvent>((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.removeWaiter(waiter);
          reject(
            new QMPTimeoutError(
              `${this.owner.name}: no ${what} within ${timeoutMs} ms${this.recent()}`,
              what,
              timeoutMs,
            ),
          );
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /**
   * Iterates over events until the connection ends or the listener is closed; each step waits
   * at most timeoutMs (default: the client's) and throws QMPTimeoutError when nothing came.
   */
  async *iterate(options: { timeoutMs?: number } = {}): AsyncGenerator<QMPEvent, void, undefined> {
    for (;;) {
      let event: QMPEvent;
      try {
        event = await this.get(options);
      } catch (error) {
        if (error instanceof QMPDisconnectedError || error instanceof QMPListenerClosedError)
          return;
        throw error;
      }
      yield event;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<QMPEvent> {
    return this.iterate();
  }

  /** Drops queued events (history stays). */
  clear(): void {
    this.queue.length = 0;
  }

  /** Detaches from the client; pending get()/waitFor() reject with QMPListenerClosedError. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.owner.detach(this);
    this.rejectAll(
      () => new QMPListenerClosedError(`${this.owner.name}: listener closed while waiting`),
    );
  }

  /** @internal Called by the client for every event. */
  deliver(event: QMPEvent): void {
    if (this.isClosed) return;
    let matches: boolean;
    try {
      matches = this.accepts(event);
    } catch {
      // A throwing filter is the caller's bug; treat as "not mine" rather than break the client.
      matches = false;
    }
    if (!matches) return;
    pushBounded(this.history, event, this.historyLimit);
    // A copy: waiters are removed while looping.
    for (const waiter of [...this.waiters]) {
      let taken: boolean;
      try {
        taken = waiter.predicate(event);
      } catch (error) {
        // That waiter's predicate is broken: fail it, the event may still suit another.
        this.removeWaiter(waiter);
        waiter.reject(error instanceof Error ? error : new Error(String(error)));
        continue;
      }
      if (taken) {
        this.removeWaiter(waiter);
        waiter.resolve(event);
        return;
      }
    }
    this.queue.push(event);
  }

  /** @internal Called by the client when the connection ends. */
  connectionClosed(reason: string): void {
    this.rejectAll(
      () =>
        new QMPDisconnectedError(
          `${this.owner.name}: QEMU went away while waiting for an event (${reason})${this.recent()}`,
        ),
    );
  }

  private rejectAll(makeError: () => Error) {
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(makeError());
    }
  }

  private removeWaiter(waiter: Waiter) {
    clearTimeout(waiter.timer);
    const index = this.waiters.indexOf(waiter);
    if (index >= 0) this.waiters.splice(index, 1);
  }

  // The last few events this listener matched: what did arrive, when the expected one did not.
  private recent(): string {
    if (this.history.length === 0) return "; this listener matched no events";
    const last = this.history.slice(-5).map(describeEvent).join(", ");
    return `; last events matched: ${last}`;
  }
}
