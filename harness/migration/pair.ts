// A migration pair: a destination started with -incoming defer and a source, configured alike.
// Every QMP command a test sends goes through a recorded verb of the pair, so the timeline holds
// what was asked as well as what both sides answered; both sides' query-migrate and info migrate
// are recorded on every wake-up (MIGRATION events, with polling as the safety net), so a failure
// can say what each side last reported.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  type GuestOptions,
  type PreparedGuest,
  prepareGuest,
  type RamIntegrity,
} from "../guest/guest.ts";
import type { AccelRequest } from "../qemu/accel.ts";
import { defaultParentDir, type ExitInfo, Machine, type MachineOptions } from "../qemu/machine.ts";
import { registerPath, unregisterPath } from "../qemu/process-registry.ts";
import { type MigrationFeatures, migrationFeatures } from "../qmp/migration-features.ts";
import type {
  MigrationCapabilityStatus,
  MigrationInfo,
  MigrationParameters,
  MigrationStatus,
  QMPEvent,
  StatusInfo,
} from "../qmp/qapi.ts";
import type { QmpSchema } from "../qmp/schema.ts";
import { formatViolations, validateEventData, validateReply } from "../qmp/validate.ts";
import { CleanupStack } from "../util/cleanup-stack.ts";
import { runParentDir } from "../util/paths.ts";
import { timeoutMs } from "../util/timeouts.ts";
import * as config from "./config.ts";
import { CONVERGING_PARAMETERS, choosesConvergence } from "./convergence.ts";
import { formatDiagnostics } from "./diagnostics.ts";
import { MigrationError } from "./errors.ts";
import { type ExpectedExit, exitProblems } from "./exit-expectations.ts";
import { FaultProxy } from "./fault-proxy.ts";
import { openFdsetFiles } from "./fdset-transport.ts";
import * as flow from "./flow.ts";
import type { MigrationOutcome, MigrationResult, SideSnapshot } from "./result.ts";
import { type Side, Timeline } from "./timeline.ts";
import {
  type AddressArguments,
  bindAttempts,
  freeLoopbackPort,
  type Transport,
  type TransportKind,
  transportUris,
} from "./transport.ts";
import * as waits from "./waits.ts";

export { MigrationConfigError, MigrationError } from "./errors.ts";
export type { MigrationOutcome, MigrationResult, SideResult, SideSnapshot } from "./result.ts";
export type { Side } from "./timeline.ts";
export {
  assertPortFree,
  freeLoopbackPort,
  type Transport,
  type TransportKind,
} from "./transport.ts";

export interface SideOptions {
  binary?: string;
  /** Only this side: e.g. max-bandwidth on the source. */
  parameters?: MigrationParameters;
  /** Only this side. */
  capabilities?: Record<string, boolean>;
  ramBackingFile?: boolean;
  extraArgs?: string[];
}

export interface PairOptions {
  /** Both sides' binary unless a side names its own (cross-version pairs). */
  binary?: string;
  accel?: AccelRequest;
  machineType?: string;
  memoryMiB?: number;
  /** The guest both sides run: the boot-block guest by default, checked after migration. */
  guest?: GuestOptions;
  /** Extra guest-loading arguments (a custom guest); the default guest is then "none". */
  guestArgs?: string[];
  /** Set on both sides; `events` is always on. */
  capabilities?: Record<string, boolean>;
  /** Set on both sides. */
  parameters?: MigrationParameters;
  /**
   * Leave the source's bandwidth and downtime limit at QEMU's defaults. Otherwise a dirtying
   * guest gets CONVERGING_PARAMETERS unless the caller chose its own.
   */
  keepQemuConvergenceDefaults?: boolean;
  source?: SideOptions;
  destination?: SideOptions;
  transport?: Transport | TransportKind;
  /** tcp only: a fixed port (same as transport {kind: "tcp", port}). */
  port?: number;
  /**
   * The URI the source is given instead of the one the destination listens on (a URI
   * transport): the seam for a relay or proxy between the two, e.g. tcp to a local port that
   * forwards to the destination's.
   */
  outgoingUri?: (destinationUri: string) => string | Promise<string>;
  /**
   * A FaultProxy between the sides (tcp and unix transports): the destination listens on its
   * own address, the source is given the proxy's; `pair.proxy` breaks the stream on command.
   */
  faultProxy?: boolean;
  /** How often both sides are snapshotted while waiting, besides every event. */
  pollIntervalMs?: number;
  startTimeoutMs?: number;
  parentDir?: string;
  /** Called with every snapshot taken (live progress). */
  onSnapshot?: (side: Side, snapshot: SideSnapshot) => void;
}

/** A wait's options: a timeout (scaled by QEMU_MIGTEST_TIMEOUT_SCALE when defaulted). */
export interface WaitOptions {
  timeoutMs?: number;
}

export interface StatusWaitOptions extends WaitOptions {
  /** Statuses that end the wait with a failure (default: failed and cancelled, unless awaited). */
  failOn?: readonly MigrationStatus[];
  /** Any other reason to give up at once (e.g. a migration judged not to converge). */
  failWhen?: (s: Snapshots) => string | undefined;
}

export type Snapshots = { source: SideSnapshot; destination: SideSnapshot };

const SIDES = ["source", "destination"] as const;

export class MigrationPair {
  readonly timeline: Timeline;
  /** Where the pair is: launch, configure, incoming, migrate, wait, verify, teardown. */
  phase = "launch";
  uri?: string;
  /** Replies and events that broke their side's schema: a failure at the next wait. */
  readonly violations: string[] = [];
  private wake: () => void = () => undefined;
  /** Events received so far: a wait that saw one arrive while it read both sides reads again. */
  private eventCount = 0;
  private closed?: Promise<string[]>;
  private readonly schemas: Record<Side, QmpSchema>;
  private readonly expectedExits: Partial<Record<Side, ExpectedExit>> = {};
  /** The fault proxy between the sides (options.faultProxy), once the destination listens. */
  proxy?: FaultProxy;
  /** When each side's current migration attempt began (timeline ms): its events count from there. */
  private readonly attemptSince: Record<Side, number> = { source: 0, destination: 0 };
  /** Destinations replaced by a fresh one: how they ended is checked at close like the others. */
  private readonly retired: { problems: Promise<string[]> }[] = [];
  /** Each machine's role, read by its event handler (reverse() swaps them). */
  private roles = new Map<Machine, { side: Side }>();
  /** Launches a fresh destination configured as the first (replaceDestination). */
  private launchDestination?: () => Promise<Machine>;
  /** What `migrate` is given, when not just `{ uri }` (channels). */
  private outgoingArguments?: AddressArguments;
  /** The fdset transport's migration file (its descriptors went to the QEMUs at launch). */
  fdsetFile?: string;
  /** Streams that file into the destination's fd 4 (fdset transport, `fd:` incoming). */
  private feedFdset?: () => Promise<void>;
  private feedsIncoming = false;
  /** A storage transport's migrate-incoming, held until the source completed. */
  private deferredIncoming?: Record<string, unknown>;
  /** ...and until this file exists (the stream is whole on disk). */
  private incomingReady?: string;

  private constructor(
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

  /** Launch both QEMUs (destination first, as -incoming defer) and configure them. */
  static async launch(options: PairOptions = {}): Promise<MigrationPair> {
    const timeline = new Timeline();
    const cleanup = new CleanupStack();
    let pair: MigrationPair | undefined;
    const memoryMiB = options.memoryMiB ?? 128;
    const guestOptions: GuestOptions =
      options.guest ?? (options.guestArgs ? { kind: "none" } : { kind: "bootblock" });
    // A machine's role is read at each event: reverse() turns a destination into a source.
    const onMessage = (role: { side: Side }) => (dir: "sent" | "received", msg: unknown) => {
      if (dir !== "received" || !isEvent(msg)) return;
      const side = role.side;
      timeline.record(side, "event", msg);
      if (pair && msg.event.startsWith("MIGRATION")) {
        const violations = validateEventData(pair.schemas[side], msg.event, msg.data);
        pair.checkSchema(side, `event ${msg.event}`, violations);
      }
      if (pair) {
        pair.eventCount++;
        pair.wake();
      }
    };
    return cleanup.guard(async () => {
      // Pair-level files (the guest image) live beside the machines' dirs and go with the pair.
      const parent = runParentDir(options.parentDir, defaultParentDir);
      const assetsDir = mkdtempSync(join(parent, "pair-"));
      registerPath(assetsDir);
      cleanup.defer(() => {
        rmSync(assetsDir, { recursive: true, force: true });
        unregisterPath(assetsDir);
      });
      const guest = await prepareGuest(guestOptions, memoryMiB, assetsDir);
      // fdset transport: the migration file's descriptors go to the QEMUs at launch.
      const kind =
        typeof options.transport === "object" ? options.transport.kind : options.transport;
      const fdset = kind === "fdset" ? await openFdsetFiles(assetsDir) : undefined;
      if (fdset) cleanup.defer(() => fdset.close());
      const machineOptions = (side: Side): MachineOptions => {
        const own = options[side] ?? {};
        return {
          ...(fdset ? { inheritFds: fdset[side].fds } : {}),
          name: side,
          binary: own.binary ?? options.binary,
          accel: options.accel,
          machineType: options.machineType,
          memoryMiB,
          guestArgs: [...guest.args, ...(options.guestArgs ?? [])],
          extraArgs: [...(fdset?.[side].args ?? []), ...(own.extraArgs ?? [])],
          // The destination's RAM on a shared file: the RAM check reads it in place.
          ramBackingFile:
            own.ramBackingFile ?? (side === "destination" && guest.params !== undefined),
          incoming: side === "destination",
          parentDir: options.parentDir,
          startTimeoutMs: options.startTimeoutMs,
        };
      };
      // Both at once: QEMU's start-up is most of a short test's time.
      const roles = new Map<Machine, { side: Side }>();
      const launchAs = async (side: Side) => {
        const role = { side };
        const m = await Machine.launch({ ...machineOptions(side), onQmpMessage: onMessage(role) });
        roles.set(m, role);
        return m;
      };
      const launched = await Promise.allSettled(SIDES.map((side) => launchAs(side)));
      for (const l of launched) {
        if (l.status === "fulfilled") cleanup.defer(() => l.value.shutdown());
      }
      // Each QEMU holds its own copy now.
      fdset?.closeInherited();
      for (const l of launched) if (l.status === "rejected") throw l.reason;
      const [source, destination] = launched.map(
        (l) => (l as PromiseFulfilledResult<Machine>).value,
      );
      if (!source || !destination) throw new Error("unreachable: both machines launched");
      const [sourceSchema, destinationSchema] = await Promise.all([
        source.schema(),
        destination.schema(),
      ]);
      const schemas = { source: sourceSchema, destination: destinationSchema };
      pair = new MigrationPair(source, destination, options, timeline, schemas, guest, cleanup);
      if (fdset) {
        pair.fdsetFile = fdset.path;
        pair.feedFdset = fdset.feed;
      }
      pair.roles = roles;
      pair.watchExit("source", source);
      pair.watchExit("destination", destination);
      pair.launchDestination = async () => {
        const m = await launchAs("destination");
        cleanup.defer(() => m.shutdown());
        return m;
      };
      await pair.configure();
      return pair;
    });
  }

  private async configure(): Promise<void> {
    this.phase = "configure";
    // A dirtying guest never converges under QEMU's default bandwidth and 300 ms limit: unless
    // the caller chose them, the source gets parameters under which migrate() can complete.
    const sourceChose =
      this.options.keepQemuConvergenceDefaults ||
      choosesConvergence(this.options.parameters) ||
      choosesConvergence(this.options.source?.parameters);
    const defaults = this.guest.params && !sourceChose ? CONVERGING_PARAMETERS : {};
    if (Object.keys(defaults).length > 0) {
      this.timeline.record(
        "harness",
        "note",
        `dirtying guest: converging parameters ${JSON.stringify(defaults)} set on the source`,
      );
    }
    await Promise.all(
      SIDES.map(async (side) => {
        const own = this.options[side];
        await this.setCapabilities(side, {
          events: true,
          ...this.options.capabilities,
          ...own?.capabilities,
        });
        const parameters = {
          ...(side === "source" ? defaults : {}),
          ...this.options.parameters,
          ...own?.parameters,
        };
        if (Object.keys(parameters).length > 0) await this.setParameters(side, parameters);
      }),
    );
  }

  /** Record a schema violation (never thrown from an event hook: raised at the next wait). */
  private checkSchema(
    side: Side,
    what: string,
    violations: ReturnType<typeof validateReply>,
  ): void {
    if (violations.length === 0) return;
    const text = `${side}: ${formatViolations(what, violations)}`;
    this.violations.push(text);
    this.timeline.record(side, "note", `schema violation: ${text}`);
  }

  // ------------------------------------------------------------------ recorded verbs

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

  /** Set capabilities on one side after checking QEMU knows them, then read them back. */
  setCapabilities(side: Side, capabilities: Record<string, boolean>): Promise<void> {
    return config.setCapabilities(this, side, capabilities);
  }

  /** Set parameters on one side after checking QEMU knows them, then read them back. */
  setParameters(side: Side, parameters: MigrationParameters): Promise<void> {
    return config.setParameters(this, side, parameters);
  }

  /** migrate_cancel on one side (the source by default). */
  cancel(side: Side = "source"): Promise<unknown> {
    return this.execute(side, "migrate_cancel");
  }

  /** migrate-pause: break the migration stream on purpose (postcopy recovery tests). */
  pause(side: Side): Promise<unknown> {
    return this.execute(side, "migrate-pause");
  }

  /** Resume a paused postcopy: migrate-recover on the destination, migrate resume on the source. */
  recover(side: Side, uri: string): Promise<unknown> {
    // Out-of-band where QEMU offers it (as qtest does): a paused postcopy destination's main
    // loop may itself be waiting for a page.
    const oob = this.machine(side).qmp.capabilities.includes("oob");
    return side === "destination"
      ? this.execute(side, "migrate-recover", { uri }, { oob })
      : this.execute(side, "migrate", { uri, resume: true });
  }

  /**
   * A paused postcopy resumed on a fresh address (tcp: a new free port; unix: a new socket),
   * straight from the source to the destination: migrate-recover, then migrate with resume.
   */
  async recoverPostcopy(): Promise<string> {
    const uri =
      this.transport.kind === "unix"
        ? `unix:${join(this.destination.dir, `recover-${this.timeline.now()}.sock`)}`
        : `tcp:127.0.0.1:${await freeLoopbackPort()}`;
    await this.recover("destination", uri);
    await this.recover("source", uri);
    return uri;
  }

  startPostcopy(): Promise<unknown> {
    return this.execute("source", "migrate-start-postcopy");
  }

  /** migrate-continue from a pause-before-switchover state (pre-switchover). */
  continueFrom(state: MigrationStatus): Promise<unknown> {
    return this.execute("source", "migrate-continue", { state });
  }

  /** stop / cont of one side's VM. */
  stopVm(side: Side): Promise<unknown> {
    return this.execute(side, "stop");
  }
  contVm(side: Side): Promise<unknown> {
    return this.execute(side, "cont");
  }

  /**
   * Put the destination in listening state. Returns the URI the source must use. With
   * `exitOnError: false` (QEMU 9.1+) the destination survives a failed incoming migration.
   */
  async startIncoming(options: { exitOnError?: boolean } = {}): Promise<string> {
    this.phase = "incoming";
    const transport = this.transport;
    const attempts = bindAttempts(transport);
    for (let attempt = 1; ; attempt++) {
      const uris = await transportUris(transport, this.destination.dir, this.fdsetFile);
      this.outgoingArguments = uris.outgoingArguments;
      const rewritten = this.options.outgoingUri
        ? await this.options.outgoingUri(uris.outgoing)
        : uris.outgoing;
      const outgoing = uris.incoming ? await this.throughProxy(rewritten) : rewritten;
      if (outgoing !== uris.outgoing) {
        this.timeline.record(
          "harness",
          "note",
          `the source is given ${outgoing}, not ${uris.outgoing}`,
        );
      }
      if (!uris.incoming) {
        this.timeline.record(
          "harness",
          "note",
          `the destination does not listen (${transport.kind})`,
        );
        this.uri = outgoing;
        return outgoing;
      }
      const args = {
        ...(uris.incomingArguments ?? { uri: uris.incoming }),
        ...(options.exitOnError === undefined ? {} : { "exit-on-error": options.exitOnError }),
      };
      if (uris.incomingAfterOutgoing) {
        // The destination reads what the source writes: it is told once the source completed.
        this.deferredIncoming = args;
        this.incomingReady = uris.incomingReady;
        this.feedsIncoming = uris.incomingFed === true;
        this.timeline.record(
          "harness",
          "note",
          `the destination loads ${uris.incoming} once the source completed (${transport.kind})`,
        );
        this.uri = outgoing;
        return outgoing;
      }
      try {
        await this.execute("destination", "migrate-incoming", args);
        this.uri = outgoing;
        return outgoing;
      } catch (error) {
        // A free port can be taken between the probe and QEMU's bind: pick another.
        if (attempt < attempts && /in use/i.test(String((error as Error).message))) continue;
        throw await this.fail(
          `migrate-incoming ${uris.incoming} failed: ${(error as Error).message}`,
          "destination",
          error,
        );
      }
    }
  }

  /**
   * Start the outgoing migration on the source (returns once QEMU accepted the command). A
   * refusal is thrown as QEMU's own ExecuteError (class and desc), for a test that expects one.
   */
  async startMigration(uri = this.uri): Promise<void> {
    if (!uri) throw new Error("startMigration: no URI (call startIncoming first or pass one)");
    this.phase = "migrate";
    this.attemptSince.source = this.timeline.now();
    // The transport's own arguments (channels) for the address startIncoming returned.
    const args = uri === this.uri && this.outgoingArguments ? this.outgoingArguments : { uri };
    this.uri = uri;
    await this.execute("source", "migrate", { ...args });
  }

  /** The destination of a storage transport (exec, file, fdset) still has to be told to load. */
  get incomingDeferred(): boolean {
    return this.deferredIncoming !== undefined;
  }

  /**
   * For a storage transport: once the source has completed, migrate-incoming on the destination
   * (it loads what the source wrote). A refusal is thrown as QEMU's own ExecuteError.
   */
  async startDeferredIncoming(options: StatusWaitOptions = {}): Promise<void> {
    const args = this.deferredIncoming;
    if (!args) throw new Error("startDeferredIncoming: no deferred incoming migration");
    await this.waitForStatus("source", "completed", options);
    const ready = this.incomingReady;
    if (ready) {
      const deadline = Date.now() + (options.timeoutMs ?? timeoutMs("migration"));
      while (!existsSync(ready)) {
        if (Date.now() > deadline) {
          throw await this.fail(`the source completed but ${ready} never appeared`, "source");
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    this.deferredIncoming = undefined;
    this.phase = "incoming";
    await this.execute("destination", "migrate-incoming", args);
    // fd: incoming reads a socket: the harness streams the file into its other end.
    if (this.feedsIncoming && this.feedFdset) {
      this.timeline.record(
        "harness",
        "note",
        `streaming ${this.fdsetFile} into the destination's fd`,
      );
      await this.feedFdset().catch((error: Error) => {
        this.timeline.record(
          "harness",
          "note",
          `feeding the destination stopped: ${error.message}`,
        );
      });
    }
  }

  // ------------------------------------------------------------------ snapshots and waits

  /**
   * query-migrate, info migrate, query-migrate again, of one side, all recorded. The HMP text is
   * bracketed by two QMP reads, so a check knows whether the state moved while it was printed.
   */
  async snapshot(side: Side): Promise<SideSnapshot> {
    const m = this.machine(side);
    const read = async () => {
      const info = await m.qmp.execute<MigrationInfo>("query-migrate");
      this.timeline.record(side, "query-migrate", info);
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

  /** qtest's wait_for_migration_status: `side` reaches one of `goal`; `failOn` ends the wait. */
  waitForStatus(
    side: Side,
    goal: MigrationStatus | readonly MigrationStatus[],
    options: StatusWaitOptions = {},
  ): Promise<Snapshots> {
    return waits.waitForStatuses(
      this,
      { [side]: typeof goal === "string" ? [goal] : goal },
      options,
    );
  }

  /** Each named side reaches one of its statuses. */
  waitForStatuses(
    want: Partial<Record<Side, readonly MigrationStatus[]>>,
    options: StatusWaitOptions = {},
  ): Promise<Snapshots> {
    return waits.waitForStatuses(this, want, options);
  }

  /** The source has done `n` dirty-bitmap syncs (qtest counts passes so) and still migrates. */
  waitForPasses(n: number, options: WaitOptions = {}): Promise<Snapshots> {
    return waits.waitForPasses(this, n, options);
  }

  /** A QMP event `name` on `side` whose data satisfies `match`, recorded since `sinceT` ms. */
  waitForEvent(
    side: Side,
    name: string,
    match: (data: Record<string, unknown>) => boolean = () => true,
    options: WaitOptions & { sinceT?: number } = {},
  ): Promise<QMPEvent> {
    return waits.waitForEvent(this, side, name, match, options);
  }

  /** Poll query-status on one side until `ok` holds (bounded). */
  waitForVm(
    side: Side,
    ok: (s: StatusInfo) => boolean,
    what: string,
    limit = timeoutMs("vmState"),
  ): Promise<StatusInfo> {
    return waits.waitForVm(this, side, ok, what, limit);
  }

  // ------------------------------------------------------------------ the plain flow

  /** The whole precopy flow: incoming, migrate, completed, destination running, RAM verified. */
  migrate(options: { timeoutMs?: number; ramCheck?: boolean } = {}): Promise<MigrationResult> {
    return flow.migrate(this, options);
  }

  /** After both sides completed: destination running, final state, RAM check. */
  finishCompleted(uri: string, started: number, ramCheck: boolean): Promise<MigrationResult> {
    return flow.finishCompleted(this, uri, started, ramCheck);
  }

  /** Before migrating: the guest has started on the source (its start marker). */
  waitForGuest(): Promise<void> {
    return flow.waitForGuest(this);
  }

  /** After completion: the guest runs on the destination, and its RAM holds the pattern. */
  checkRam(): Promise<RamIntegrity> {
    return flow.checkRam(this);
  }

  /** Both sides' last snapshot, run state and MIGRATION events, for an ended migration. */
  finalState(
    outcome: MigrationOutcome,
    destinationVm?: StatusInfo,
  ): Promise<Omit<MigrationResult, "uri" | "durationMs">> {
    return flow.finalState(this, outcome, destinationVm);
  }

  // ------------------------------------------------------------------ failures and teardown

  /** Declare that `side` will exit by itself during the test, and how (else a failure). */
  expectExit(side: Side, exit: ExpectedExit): void {
    this.expectedExits[side] = exit;
    this.timeline.record(
      "harness",
      "note",
      `the ${side} is expected to exit: ${JSON.stringify(exit)}`,
    );
  }

  /** When each QEMU exited (timeline ms), noted on the timeline as it happens. */
  private readonly exitedAt: Partial<Record<Side, number>> = {};

  private watchExit(side: Side, m: Machine): void {
    void m.exited.then(() => {
      if (this.machine(side) !== m) return;
      this.exitedAt[side] = this.timeline.now();
      this.timeline.record("harness", "note", this.describeExit(side));
    });
  }

  private goneAsDeclared(side: Side): boolean {
    return !this.machine(side).isRunning() && this.expectedExits[side] !== undefined;
  }

  private lastSnapshot(side: Side): SideSnapshot {
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
  private async survivorState(side: Side): Promise<string> {
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
  private async lostSide(context: string, error: unknown): Promise<MigrationError> {
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

  /** Route the source through a fresh FaultProxy when the pair has one (closed at pair close). */
  private async throughProxy(uri: string): Promise<string> {
    if (!this.options.faultProxy) return uri;
    await this.proxy?.close();
    this.proxy = await FaultProxy.start(uri);
    this.timeline.record("harness", "note", `fault proxy ${this.proxy.uri} -> ${uri}`);
    return this.proxy.uri;
  }

  /**
   * Replace the destination with a fresh one, configured as the first (A -> B failed or was
   * cancelled, then A -> C). The old one is shut down; how it ended is checked at close against
   * what was declared for it. Call startIncoming again afterwards.
   */
  async replaceDestination(): Promise<Machine> {
    if (!this.launchDestination) throw new Error("replaceDestination: the pair was not launched");
    const old = this.destination;
    const early = old.exit;
    const expected = this.expectedExits.destination;
    delete this.expectedExits.destination;
    await this.proxy?.close();
    this.proxy = undefined;
    this.retired.push({
      problems: old
        .shutdown()
        .then((final) =>
          exitProblems("destination", early, final, expected, old.stderrTail(1024)).map(
            (p) => `replaced ${p}`,
          ),
        ),
    });
    await this.retired.at(-1)?.problems;
    const fresh = await this.launchDestination();
    this.destination = fresh;
    delete this.exitedAt.destination;
    this.watchExit("destination", fresh);
    this.attemptSince.destination = this.timeline.now();
    this.uri = undefined;
    this.timeline.record(
      "harness",
      "note",
      `destination pid ${old.pid} replaced by a fresh destination, pid ${fresh.pid}`,
    );
    await this.setCapabilities("destination", {
      events: true,
      ...this.options.capabilities,
      ...this.options.destination?.capabilities,
    });
    const parameters = { ...this.options.parameters, ...this.options.destination?.parameters };
    if (Object.keys(parameters).length > 0) await this.setParameters("destination", parameters);
    return fresh;
  }

  /**
   * After a completed migration, migrate back: the destination (B, running the guest) becomes
   * the source and a fresh QEMU (A again) the destination; the old source, left in postmigrate,
   * is shut down and its ending checked at close. Call startIncoming again afterwards.
   */
  async reverse(): Promise<void> {
    if (!this.launchDestination) throw new Error("reverse: the pair was not launched");
    const old = this.source;
    const early = old.exit;
    const expected = this.expectedExits.source;
    delete this.expectedExits.source;
    await this.proxy?.close();
    this.proxy = undefined;
    const problems = old
      .shutdown()
      .then((final) =>
        exitProblems("source", early, final, expected, old.stderrTail(1024)).map(
          (p) => `reversed ${p}`,
        ),
      );
    this.retired.push({ problems });
    await problems;
    const fresh = await this.launchDestination();
    this.source = this.destination;
    this.destination = fresh;
    const role = this.roles.get(this.source);
    if (role) role.side = "source";
    this.schemas.source = this.schemas.destination;
    this.exitedAt.source = this.exitedAt.destination;
    delete this.exitedAt.destination;
    this.watchExit("source", this.source);
    this.watchExit("destination", fresh);
    this.attemptSince.source = this.timeline.now();
    this.attemptSince.destination = this.timeline.now();
    this.uri = undefined;
    this.timeline.record(
      "harness",
      "note",
      `reversed: destination pid ${this.source.pid} is the source now, fresh destination pid ${fresh.pid} (old source pid ${old.pid} shut down)`,
    );
    await this.setCapabilities("destination", {
      events: true,
      ...this.options.capabilities,
      ...this.options.destination?.capabilities,
    });
    const parameters = { ...this.options.parameters, ...this.options.destination?.parameters };
    if (Object.keys(parameters).length > 0) await this.setParameters("destination", parameters);
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

function isEvent(msg: unknown): msg is QMPEvent {
  return typeof msg === "object" && msg !== null && "event" in msg;
}
