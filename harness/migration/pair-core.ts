// The state every migration pair holds and what reads it: both machines, the timeline, schema
// validation, snapshots and the wait loop, how each QEMU ended and the failure headline that says
// so, and teardown with its exit checks. MigrationPair (pair.ts) adds the launch, the recorded
// verbs, the incoming side of each transport and the hops (a fresh destination, the way back).

import type { PreparedGuest } from "../guest/guest.ts";
import type { ExitInfo, Machine } from "../qemu/machine.ts";
import { type MigrationFeatures, migrationFeatures } from "../qmp/migration-features.ts";
import type { MigrationCapabilityStatus, MigrationInfo, MigrationParameters } from "../qmp/qapi.ts";
import type { QmpSchema } from "../qmp/schema.ts";
import { formatViolations, validateReply } from "../qmp/validate.ts";
import type { FaultProxy } from "../transport/fault-proxy.ts";
import type { AddressArguments, Transport } from "../transport/transport.ts";
import type { CleanupStack } from "../util/cleanup-stack.ts";
import { timeoutMs } from "../util/timeouts.ts";
import { formatDiagnostics } from "./diagnostics.ts";
import { MigrationError } from "./errors.ts";
import { type ExpectedExit, exitProblems } from "./exit-expectations.ts";
import type { PairOptions, Snapshots, WaitOptions } from "./pair-options.ts";
import type { SideSnapshot } from "./result.ts";
import type { Side, Timeline } from "./timeline.ts";

const SIDES = ["source", "destination"] as const;

export abstract class PairCore {
  readonly timeline: Timeline;

  /** Where the pair is: launch, configure, incoming, migrate, wait, verify, teardown. */
  phase = "launch";

  uri?: string;

  /** Replies and events that broke their side's schema: a failure at the next wait. */
  readonly violations: string[] = [];

  protected wake: () => void = () => undefined;

  /** Events received so far: a wait that saw one arrive while it read both sides reads again. */
  protected eventCount = 0;

  protected closed?: Promise<string[]>;

  protected readonly schemas: Record<Side, QmpSchema>;

  protected readonly expectedExits: Partial<Record<Side, ExpectedExit>> = {};

  /** The fault proxy between the sides (options.faultProxy), once the destination listens. */
  proxy?: FaultProxy;

  /** When each side's current migration attempt began (timeline ms): its events count from there. */
  protected readonly attemptSince: Record<Side, number> = { source: 0, destination: 0 };

  /** Destinations replaced by a fresh one: how they ended is checked at close like the others. */
  protected readonly retired: { problems: Promise<string[]> }[] = [];

  /** Each machine's role, read by its event handler (reverse() swaps them). */
  protected roles = new Map<Machine, { side: Side }>();

  /** Launches a fresh destination configured as the first (replaceDestination). */
  protected launchDestination?: () => Promise<Machine>;

  /** What `migrate` is given, when not just `{ uri }` (channels). */
  protected outgoingArguments?: AddressArguments;

  /** The fdset transport's migration file (its descriptors went to the QEMUs at launch). */
  fdsetFile?: string;

  /** Streams that file into the destination's fd 4 (fdset transport, `fd:` incoming). */
  protected feedFdset?: () => Promise<void>;

  protected feedsIncoming = false;

  /** A storage transport's migrate-incoming, held until the source completed. */
  protected deferredIncoming?: Record<string, unknown>;

  /** ...and until this file exists (the stream is whole on disk). */
  protected incomingReady?: string;

  protected constructor(
    /** Replaced by reverse (A -> B, then B -> A). */
    public source: Machine,
    /** Replaced by replaceDestination (A -> B failed, then A -> C). */
    public destination: Machine,
    readonly options: PairOptions,
    timeline: Timeline,
    schemas: Record<Side, QmpSchema>,
    readonly guest: PreparedGuest,
    private readonly cleanup: CleanupStack,
  ) {
    this.timeline = timeline;
    this.schemas = schemas;
  }

  /** That side's binary's schema (read at launch). */
  schema(side: Side): QmpSchema {
    return this.schemas[side];
  }

  /** Feature answers from that side's schema, by structure, never by version number. */
  features(side: Side): MigrationFeatures {
    return migrationFeatures(this.schemas[side]);
  }

  machine(side: Side): Machine {
    return side === "source" ? this.source : this.destination;
  }

  get transport(): Transport {
    const t = this.options.transport ?? "tcp";
    if (typeof t !== "string") return t;
    if (t === "tcp")
      return { kind: "tcp", ...(this.options.port ? { port: this.options.port } : {}) };
    return { kind: t } as Transport;
  }

  /** Record a schema violation (never thrown from an event hook: raised at the next wait). */
  protected checkSchema(
    side: Side,
    what: string,
    violations: ReturnType<typeof validateReply>,
  ): void {
    if (violations.length === 0) return;
    const text = `${side}: ${formatViolations(what, violations)}`;
    this.violations.push(text);
    this.timeline.record(side, "note", `schema violation: ${text}`);
  }

  /** Any QMP command, recorded on the timeline: the escape hatch for what has no verb yet. */
  async execute<T = unknown>(
    side: Side,
    command: string,
    args?: Record<string, unknown>,
    options: { oob?: boolean } = {},
  ): Promise<T> {
    this.timeline.record(side, "command", { command, ...(args ? { arguments: args } : {}) });
    return this.machine(side).qmp.execute<T>(command, args, options);
  }

  /** The capabilities that side's QEMU knows, with their current state. */
  async queryCapabilities(side: Side): Promise<MigrationCapabilityStatus[]> {
    return this.machine(side).qmp.execute<MigrationCapabilityStatus[]>(
      "query-migrate-capabilities",
    );
  }

  /** That side's migration parameters as QEMU reports them. */
  async queryParameters(side: Side): Promise<MigrationParameters> {
    return this.machine(side).qmp.execute<MigrationParameters>("query-migrate-parameters");
  }

  /**
   * query-migrate, info migrate, query-migrate again, of one side, all recorded. The HMP text is
   * bracketed by two QMP reads, so a check knows whether the state moved while it was printed.
   */
  async snapshot(side: Side): Promise<SideSnapshot> {
    const m = this.machine(side);
    const read = async () => {
      const sentT = this.timeline.now();
      const info = await m.qmp.execute<MigrationInfo>("query-migrate");
      this.timeline.record(side, "query-migrate", info, sentT);
      const violations = validateReply(this.schemas[side], "query-migrate", info);
      this.checkSchema(side, "query-migrate", violations);
      return info;
    };
    const before = await read();
    const infoMigrate = await m.hmp("info migrate");
    this.timeline.record(side, "info-migrate", infoMigrate);
    const migration = await read();
    const snap = { migration, infoMigrate, before };
    this.options.onSnapshot?.(side, snap);
    return snap;
  }

  /**
   * Wait until `done` holds over the latest snapshots of both sides. Wakes on every event and
   * at least every pollIntervalMs. `failOn(snapshots)` returning a reason ends the wait at once
   * with the diagnostics.
   */
  async waitUntil(
    what: string,
    done: (s: Snapshots) => boolean,
    options: WaitOptions & { failOn?: (s: Snapshots) => string | undefined } = {},
  ): Promise<Snapshots> {
    this.phase = "wait";
    const limit = options.timeoutMs ?? timeoutMs("migration");
    const deadline = Date.now() + limit;
    const poll = this.options.pollIntervalMs ?? 100;
    for (;;) {
      const eventsBefore = this.eventCount;
      let snaps: Snapshots;
      try {
        // A side declared to exit that has exited answers with what it said last.
        const [source, destination] = await Promise.all(
          SIDES.map((s) => (this.goneAsDeclared(s) ? this.lastSnapshot(s) : this.snapshot(s))),
        );
        snaps = { source: source as SideSnapshot, destination: destination as SideSnapshot };
      } catch (error) {
        // A side declared to exit may go while it is being read: read again from its last words.
        await Promise.race([
          ...SIDES.map((s) => this.machine(s).exited),
          new Promise((r) => setTimeout(r, 1000)),
        ]);
        const dead = SIDES.filter((s) => !this.machine(s).isRunning());
        if (dead.length > 0 && dead.every((s) => this.goneAsDeclared(s))) continue;
        throw await this.lostSide(`while waiting for ${what}`, error);
      }
      if (this.violations.length > 0) {
        throw await this.fail(
          `while waiting for ${what}: replies broke their QEMU's own schema:\n${this.violations.join("\n")}`,
          undefined,
        );
      }
      if (done(snaps)) return snaps;
      const reason = options.failOn?.(snaps);
      if (reason) throw await this.fail(`while waiting for ${what}: ${reason}`, undefined);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw await this.fail(
          `timed out after ${limit} ms waiting for ${what}: source is "${snaps.source.migration.status}", destination is "${snaps.destination.migration.status}"`,
          undefined,
        );
      }
      // An event during the reads would otherwise be a lost wake-up: up to a poll interval late.
      if (this.eventCount !== eventsBefore) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(poll, left));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = () => undefined;
    }
  }

  /** Declare that `side` will exit by itself during the test, and how (else a failure). */
  expectExit(side: Side, exit: ExpectedExit): void {
    this.expectedExits[side] = exit;
    this.timeline.record(
      "harness",
      "note",
      `the ${side} is expected to exit: ${JSON.stringify(exit)}`,
    );
  }

  /** Wait until `side`, declared to exit, has exited; how it ended is checked at close. */
  async waitForExit(side: Side, options: WaitOptions = {}): Promise<ExitInfo> {
    const limit = options.timeoutMs ?? timeoutMs("failure");
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      this.machine(side).exited,
      new Promise<undefined>((r) => {
        timer = setTimeout(() => r(undefined), limit);
      }),
    ]);
    clearTimeout(timer);
    if (!exit) {
      throw await this.fail(
        `the ${side} was declared to exit (${JSON.stringify(this.expectedExits[side] ?? {})}) but still runs after ${limit} ms`,
        side,
      );
    }
    return exit;
  }

  /** When each QEMU exited (timeline ms), noted on the timeline as it happens. */
  protected readonly exitedAt: Partial<Record<Side, number>> = {};

  protected watchExit(side: Side, m: Machine): void {
    void m.exited.then(() => {
      if (this.machine(side) !== m) return;
      this.exitedAt[side] = this.timeline.now();
      this.timeline.record("harness", "note", this.describeExit(side));
    });
  }

  /** `side` has exited, and the test declared that it would. */
  goneAsDeclared(side: Side): boolean {
    return !this.machine(side).isRunning() && this.expectedExits[side] !== undefined;
  }

  protected lastSnapshot(side: Side): SideSnapshot {
    const migration = this.timeline.last(side, "query-migrate")?.data ?? {};
    const infoMigrate = this.timeline.last(side, "info-migrate")?.data ?? "";
    return { migration, infoMigrate, before: migration };
  }

  /**
   * How a QEMU ended, as the headline of a failure: "destination QEMU (pid N) was killed by
   * SIGKILL at t=812 ms", "destination QEMU (pid N) exited with code 1 at t=.. ms: <its last
   * stderr line>".
   */
  describeExit(side: Side): string {
    const m = this.machine(side);
    const e = m.exit;
    if (!e) return `${side} QEMU (pid ${m.pid}) is running`;
    const at = this.exitedAt[side] === undefined ? "" : ` at t=${this.exitedAt[side]} ms`;
    if (e.signal) return `${side} QEMU (pid ${m.pid}) was killed by ${e.signal}${at}`;
    const last = m
      .stderrTail(4096)
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean)
      .pop();
    // A clean exit (quit) says nothing of why: its stderr is an older story.
    const why = e.exitCode !== 0 && last ? `: ${last}` : "";
    return `${side} QEMU (pid ${m.pid}) exited with code ${e.exitCode}${at}${why}`;
  }

  /** The other side's VM and migration state, for the second half of a headline. */
  protected async survivorState(side: Side): Promise<string> {
    const m = this.machine(side);
    if (!m.isRunning()) return this.describeExit(side);
    try {
      const [vm, info] = await Promise.all([
        m.queryStatus(),
        m.qmp.execute<MigrationInfo>("query-migrate"),
      ]);
      const desc = info["error-desc"] ? ` (${info["error-desc"]})` : "";
      return `the ${side} VM is ${vm.running ? "running" : `not running (${vm.status})`}, its migration status "${info.status ?? "none"}"${desc}`;
    } catch (error) {
      return `the ${side} does not answer either: ${(error as Error).message}`;
    }
  }

  /** A side stopped answering: the failure names the first cause (which QEMU ended, how), then the other side. */
  protected async lostSide(context: string, error: unknown): Promise<MigrationError> {
    // The QMP socket closes a moment before the process is reaped: give the exit a moment.
    await Promise.race([
      ...SIDES.map((s) => this.machine(s).exited),
      new Promise((r) => setTimeout(r, 1000)),
    ]);
    const dead = SIDES.filter((s) => !this.machine(s).isRunning());
    const side = dead[0] ?? (this.source.isRunning() ? "destination" : "source");
    if (dead.length === 0) {
      return this.fail(
        `${context}: could not read the ${side}'s state: ${(error as Error).message}`,
        side,
      );
    }
    const other: Side = side === "source" ? "destination" : "source";
    const survivor = await this.survivorState(other);
    // In postcopy the source holds the only copy of the pages not yet sent: say plainly that the
    // guest is lost, whatever QEMU then does (which pages is QEMU's to tell, not ours).
    const lost =
      side === "source" && /migration status "postcopy-/.test(survivor)
        ? "; the guest cannot survive this: its pages still on the source are gone, and the destination can only wait (postcopy-paused) for a recovery from a source that no longer exists"
        : "";
    return this.fail(
      `${this.describeExit(side)}; then ${survivor}${lost} (${context}: ${(error as Error).message})`,
      side,
    );
  }

  /** MIGRATION event statuses of `side` in its current attempt (since its last migrate, or since a fresh destination). */
  migrationEvents(side: Side): string[] {
    return this.timeline
      .of(side, "event")
      .filter((e) => e.t >= this.attemptSince[side] && e.data.event === "MIGRATION")
      .map((e) => String(e.data.data?.status));
  }

  /** Build a MigrationError with both sides' diagnostics (best effort: a side may be dead). */
  async fail(message: string, side: Side | undefined, cause?: unknown): Promise<MigrationError> {
    // One last look at each side that still answers, so the diagnostics are current.
    await Promise.all(
      SIDES.map((s) =>
        this.machine(s).isRunning() ? this.snapshot(s).catch(() => undefined) : undefined,
      ),
    );
    const where = side ? `${side}, phase ${this.phase}` : `phase ${this.phase}`;
    return new MigrationError(
      `[${where}] ${message}`,
      this.phase,
      side,
      this.diagnostics(),
      cause === undefined ? undefined : { cause },
    );
  }

  diagnostics(): string {
    return formatDiagnostics({
      phase: this.phase,
      uri: this.uri,
      timeline: this.timeline,
      machines: { source: this.source, destination: this.destination },
    });
  }

  /**
   * Shut both sides down and remove their temp dirs. Idempotent. Resolves with every way a
   * QEMU ended that the test did not declare (crash, non-zero exit, ignored quit).
   */
  close(): Promise<string[]> {
    this.closed ??= (async () => {
      this.phase = "teardown";
      const early = { source: this.source.exit, destination: this.destination.exit };
      // A side declared to ignore "quit" gets the kill after a short wait, not the full one.
      const finals = await Promise.all(
        SIDES.map((s) =>
          this.machine(s).shutdown(this.expectedExits[s]?.hangsOnQuit ? { timeoutMs: 1500 } : {}),
        ),
      );
      const proxy = this.proxy;
      await proxy?.close();
      await this.cleanup.unwind();
      const retired = (await Promise.all(this.retired.map((r) => r.problems))).flat();
      const leaks = proxy?.open ? [`the fault proxy ${proxy.uri} is still open after close`] : [];
      return [
        ...retired,
        ...leaks,
        ...SIDES.flatMap((side, i) =>
          exitProblems(
            side,
            early[side],
            finals[i] as ExitInfo,
            this.expectedExits[side],
            this.machine(side).stderrTail(1024),
          ),
        ),
      ];
    })();
    return this.closed;
  }
}
