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
import type { QemuArch } from "../qemu/arch.ts";
import { probeQemuBinary } from "../qemu/binary.ts";
import { defaultParentDir, Machine, type MachineOptions } from "../qemu/machine.ts";
import { registerPath, unregisterPath } from "../qemu/process-registry.ts";
import type { MigrationParameters, MigrationStatus, QMPEvent, StatusInfo } from "../qmp/qapi.ts";
import { validateEventData } from "../qmp/validate.ts";
import { FaultProxy } from "../transport/fault-proxy.ts";
import { openFdsetFiles } from "../transport/fdset-transport.ts";
import { bindAttempts, freeLoopbackPort, transportUris } from "../transport/transport.ts";
import { CleanupStack } from "../util/cleanup-stack.ts";
import { runParentDir } from "../util/paths.ts";
import { timeoutMs } from "../util/timeouts.ts";
import * as config from "./config.ts";
import { CONVERGING_PARAMETERS, choosesConvergence } from "./convergence.ts";
import { MigrationConfigError } from "./errors.ts";
import { exitProblems } from "./exit-expectations.ts";
import * as flow from "./flow.ts";
import { PairCore } from "./pair-core.ts";
import type { PairOptions, Snapshots, StatusWaitOptions, WaitOptions } from "./pair-options.ts";
import type { MigrationOutcome, MigrationResult } from "./result.ts";
import { type Side, Timeline } from "./timeline.ts";
import * as waits from "./waits.ts";

export {
  assertPortFree,
  freeLoopbackPort,
  type Transport,
  type TransportKind,
} from "../transport/transport.ts";
export { MigrationConfigError, MigrationError } from "./errors.ts";
export type {
  PairOptions,
  SideOptions,
  Snapshots,
  StatusWaitOptions,
  WaitOptions,
} from "./pair-options.ts";
export type { MigrationOutcome, MigrationResult, SideResult, SideSnapshot } from "./result.ts";
export type { Side } from "./timeline.ts";

const SIDES = ["source", "destination"] as const;

export class MigrationPair extends PairCore {
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
      const arch = await pairArch(options);
      const guest = await prepareGuest(guestOptions, memoryMiB, assetsDir, arch);
      // fdset transport: the migration file's descriptors go to the QEMUs at launch.
      const kind =
        typeof options.transport === "object" ? options.transport.kind : options.transport;
      const fdset = kind === "fdset" ? await openFdsetFiles(assetsDir) : undefined;
      if (fdset) cleanup.defer(() => fdset.close());
      const machineOptions = (side: Side) => machineOptionsFor(side, options, guest, fdset);
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

  protected async configure(): Promise<void> {
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
      // The proxy listens on an ephemeral port only once the destination has bound its own: the
      // port probed for the destination is free again until then, and the kernel may hand it out.
      const proxied = async () => {
        const outgoing = uris.incoming ? await this.throughProxy(rewritten) : rewritten;
        if (outgoing !== uris.outgoing) {
          this.timeline.record(
            "harness",
            "note",
            `the source is given ${outgoing}, not ${uris.outgoing}`,
          );
        }
        return outgoing;
      };
      if (!uris.incoming) {
        const outgoing = await proxied();
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
        const outgoing = await proxied();
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
      } catch (error) {
        // A free port can be taken between the probe and QEMU's bind: pick another.
        if (attempt < attempts && /in use/i.test(String((error as Error).message))) continue;
        throw await this.fail(
          `migrate-incoming ${uris.incoming} failed: ${(error as Error).message}`,
          "destination",
          error,
        );
      }
      const outgoing = await proxied();
      this.uri = outgoing;
      return outgoing;
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

  /** Route the source through a fresh FaultProxy when the pair has one (closed at pair close). */
  protected async throughProxy(uri: string): Promise<string> {
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
    const old = await this.retire("destination", "replaced");
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
    await this.configureFreshDestination();
    return fresh;
  }

  /**
   * Shut down one side's QEMU for good (the proxy in front of it too); how it ended is checked
   * at close against what was declared for it, each problem prefixed with `label`.
   */
  private async retire(side: Side, label: string): Promise<Machine> {
    const old = this.machine(side);
    const early = old.exit;
    const expected = this.expectedExits[side];
    delete this.expectedExits[side];
    await this.proxy?.close();
    this.proxy = undefined;
    const problems = old
      .shutdown()
      .then((final) =>
        exitProblems(side, early, final, expected, old.stderrTail(1024)).map(
          (p) => `${label} ${p}`,
        ),
      );
    this.retired.push({ problems });
    await problems;
    return old;
  }

  /** A fresh destination gets the capabilities and parameters the first one had. */
  private async configureFreshDestination(): Promise<void> {
    await this.setCapabilities("destination", {
      events: true,
      ...this.options.capabilities,
      ...this.options.destination?.capabilities,
    });
    const parameters = { ...this.options.parameters, ...this.options.destination?.parameters };
    if (Object.keys(parameters).length > 0) await this.setParameters("destination", parameters);
  }

  /**
   * After a completed migration, migrate back: the destination (B, running the guest) becomes
   * the source and a fresh QEMU (A again) the destination; the old source, left in postmigrate,
   * is shut down and its ending checked at close. Call startIncoming again afterwards.
   */
  async reverse(): Promise<void> {
    if (!this.launchDestination) throw new Error("reverse: the pair was not launched");
    const old = await this.retire("source", "reversed");
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
    await this.configureFreshDestination();
  }
}

/** One side's QEMU: the pair's options, the guest's arguments, the fdset's descriptors. */
function machineOptionsFor(
  side: Side,
  options: PairOptions,
  guest: PreparedGuest,
  fdset: Awaited<ReturnType<typeof openFdsetFiles>> | undefined,
): MachineOptions {
  const own = options[side] ?? {};
  return {
    ...(fdset ? { inheritFds: fdset[side].fds } : {}),
    name: side,
    binary: own.binary ?? options.binary,
    accel: options.accel,
    machineType: options.machineType,
    ...(options.cpu ? { cpu: options.cpu } : {}),
    memoryMiB: options.memoryMiB ?? 128,
    guestArgs: [...guest.args, ...(options.guestArgs ?? [])],
    extraArgs: [...(fdset?.[side].args ?? []), ...(own.extraArgs ?? [])],
    // The destination's RAM on a shared file: the RAM check reads it in place.
    ramBackingFile: own.ramBackingFile ?? (side === "destination" && guest.params !== undefined),
    incoming: side === "destination",
    parentDir: options.parentDir,
    startTimeoutMs: options.startTimeoutMs,
  };
}

/** The one target both sides emulate: a pair of two targets cannot migrate. */
async function pairArch(options: PairOptions): Promise<QemuArch> {
  const spec = (side: Side) => options[side]?.binary ?? options.binary ?? "qemu-system-x86_64";
  const [source, destination] = await Promise.all(SIDES.map((s) => probeQemuBinary(spec(s))));
  if (!source || !destination) throw new Error("unreachable: both sides probed");
  if (source.arch !== destination.arch) {
    throw new MigrationConfigError(
      `the source QEMU (${source.path}) emulates ${source.arch} and the destination (${destination.path}) ${destination.arch}: a migration stays on one target; give both sides binaries of the same architecture`,
    );
  }
  return source.arch;
}

function isEvent(msg: unknown): msg is QMPEvent {
  return typeof msg === "object" && msg !== null && "event" in msg;
}
