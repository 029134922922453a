// A migration pair: a destination started with -incoming defer and a source, configured alike,
// migrated over tcp or a unix socket, watched through MIGRATION events with query-migrate
// polling as the safety net. Both sides' query-migrate and info migrate are recorded into a
// timeline on every wake-up, so a failure can say what each side last reported.

import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import {
  checkGuestRam,
  type GuestOptions,
  type PreparedGuest,
  prepareGuest,
  type RamIntegrity,
  waitForGuestPasses,
} from "../guest/guest.ts";
import type { AccelRequest } from "../qemu/accel.ts";
import { defaultParentDir, Machine, type MachineOptions } from "../qemu/machine.ts";
import { registerPath, unregisterPath } from "../qemu/process-registry.ts";
import type {
  MigrationCapabilityStatus,
  MigrationInfo,
  MigrationParameters,
  MigrationStatus,
  QMPEvent,
  StatusInfo,
} from "../qmp/qapi.ts";
import {
  formatViolations,
  type MigrationFeatures,
  migrationFeatures,
  type QmpSchema,
  validateEventData,
  validateReply,
} from "../qmp/schema.ts";
import { CONVERGING_PARAMETERS, choosesConvergence } from "./convergence.ts";
import { formatDiagnostics } from "./diagnostics.ts";
import { type Side, Timeline } from "./timeline.ts";

export type { Side } from "./timeline.ts";
export type Transport = "tcp" | "unix";

export interface SideOptions {
  binary?: string;
  /** Only this side: e.g. max-bandwidth on the source. */
  parameters?: MigrationParameters;
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
  source?: SideOptions;
  destination?: SideOptions;
  transport?: Transport;
  /** tcp only: a fixed port; by default a free loopback port is chosen. */
  port?: number;
  /** How often both sides are snapshotted while waiting, besides every event. */
  pollIntervalMs?: number;
  startTimeoutMs?: number;
  parentDir?: string;
  /** Called with every snapshot taken (live progress). */
  onSnapshot?: (side: Side, snapshot: SideSnapshot) => void;
}

export interface SideSnapshot {
  /** query-migrate read just after info migrate. */
  migration: MigrationInfo;
  infoMigrate: string;
  /** query-migrate read just before info migrate. */
  before: MigrationInfo;
}

export interface SideResult extends SideSnapshot {
  vm: StatusInfo;
  events: string[];
}

export interface MigrationResult {
  uri: string;
  durationMs: number;
  source: SideResult;
  destination: SideResult;
  /** The guest's RAM verified on the destination (boot-block guest, unless disabled). */
  ram?: RamIntegrity;
}

/** Something went wrong in a migration; says which side, which phase, what QEMU reported. */
export class MigrationError extends Error {
  override name = "MigrationError";
  constructor(
    message: string,
    readonly phase: string,
    readonly side: Side | undefined,
    readonly diagnostics: string,
  ) {
    super(`${message}\n\n${diagnostics}`);
  }
}

/** A capability or parameter the QEMU under test does not know, or refused. */
export class MigrationConfigError extends Error {
  override name = "MigrationConfigError";
}

export class MigrationPair {
  readonly timeline: Timeline;
  /** Where the pair is: launch, configure, incoming, migrate, wait, verify, teardown. */
  phase = "launch";
  uri?: string;
  /** Replies and events that broke their side's schema: a failure at the next wait. */
  readonly violations: string[] = [];
  private wake: () => void = () => undefined;
  private closed = false;
  private readonly schemas: Record<Side, QmpSchema>;

  private constructor(
    readonly source: Machine,
    readonly destination: Machine,
    readonly options: PairOptions,
    timeline: Timeline,
    schemas: Record<Side, QmpSchema>,
    readonly guest: PreparedGuest,
    private readonly assetsDir: string,
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

  machine(side: Side): Machine {
    return side === "source" ? this.source : this.destination;
  }

  /** Launch both QEMUs (destination first, as -incoming defer) and configure them. */
  static async launch(options: PairOptions = {}): Promise<MigrationPair> {
    const timeline = new Timeline();
    let pair: MigrationPair | undefined;
    const memoryMiB = options.memoryMiB ?? 128;
    const guestOptions: GuestOptions =
      options.guest ?? (options.guestArgs ? { kind: "none" } : { kind: "bootblock" });
    // Pair-level files (the guest image) live beside the machines' dirs and go with the pair.
    const assetsDir = mkdtempSync(
      join(options.parentDir ?? process.env.QEMU_MIGTEST_RUN_DIR ?? defaultParentDir(), "pair-"),
    );
    registerPath(assetsDir);
    let guest: PreparedGuest;
    try {
      guest = await prepareGuest(guestOptions, memoryMiB, assetsDir);
    } catch (error) {
      rmSync(assetsDir, { recursive: true, force: true });
      unregisterPath(assetsDir);
      throw error;
    }
    const checksRam = guest.params !== undefined;
    const onEvent = (side: Side) => (dir: "sent" | "received", msg: unknown) => {
      if (dir === "received" && isEvent(msg)) {
        timeline.record(side, "event", msg);
        if (pair && msg.event.startsWith("MIGRATION")) {
          pair.checkSchema(
            side,
            `event ${msg.event}`,
            validateEventData(pair.schemas[side], msg.event, msg.data),
          );
        }
        pair?.wake();
      }
    };
    const common = (side: Side): MachineOptions => {
      const own = options[side] ?? {};
      return {
        name: side,
        binary: own.binary ?? options.binary,
        accel: options.accel,
        machineType: options.machineType,
        memoryMiB,
        guestArgs: [...guest.args, ...(options.guestArgs ?? [])],
        extraArgs: own.extraArgs,
        // The destination's RAM on a shared file: the RAM check reads it in place.
        ramBackingFile: own.ramBackingFile ?? (side === "destination" && checksRam),
        incoming: side === "destination",
        parentDir: options.parentDir,
        startTimeoutMs: options.startTimeoutMs,
        onQmpMessage: onEvent(side),
      };
    };
    const dropAssets = () => {
      rmSync(assetsDir, { recursive: true, force: true });
      unregisterPath(assetsDir);
    };
    let destination: Machine;
    try {
      destination = await Machine.launch(common("destination"));
    } catch (error) {
      dropAssets();
      throw error;
    }
    let source: Machine;
    try {
      source = await Machine.launch(common("source"));
    } catch (error) {
      await destination.shutdown();
      dropAssets();
      throw error;
    }
    try {
      const [sourceSchema, destinationSchema] = await Promise.all([
        source.schema(),
        destination.schema(),
      ]);
      pair = new MigrationPair(
        source,
        destination,
        options,
        timeline,
        { source: sourceSchema, destination: destinationSchema },
        guest,
        assetsDir,
      );
    } catch (error) {
      await Promise.all([source.shutdown(), destination.shutdown()]);
      dropAssets();
      throw error;
    }
    try {
      await pair.configure();
    } catch (error) {
      await pair.close();
      throw error;
    }
    return pair;
  }

  private async configure(): Promise<void> {
    this.phase = "configure";
    const capabilities = { events: true, ...this.options.capabilities };
    // A dirtying guest never converges under QEMU's default bandwidth and 300 ms limit: unless
    // the caller chose them, the source gets parameters under which migrate() can complete.
    const sourceChose =
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
      (["source", "destination"] as const).map(async (side) => {
        await this.setCapabilities(side, capabilities);
        const parameters = {
          ...(side === "source" ? defaults : {}),
          ...this.options.parameters,
          ...this.options[side]?.parameters,
        };
        if (Object.keys(parameters).length > 0) await this.setParameters(side, parameters);
      }),
    );
  }

  /** Set capabilities on one side after checking QEMU knows them, then read them back. */
  async setCapabilities(side: Side, capabilities: Record<string, boolean>): Promise<void> {
    const m = this.machine(side);
    const known = await m.qmp.execute<MigrationCapabilityStatus[]>("query-migrate-capabilities");
    const names = known.map((c) => c.capability);
    for (const name of Object.keys(capabilities)) {
      if (!names.includes(name)) {
        throw new MigrationConfigError(
          `unknown migration capability "${name}" on the ${side} (QEMU ${m.binary.version}); it knows: ${names.join(", ")}`,
        );
      }
    }
    const list = Object.entries(capabilities).map(([capability, state]) => ({ capability, state }));
    this.timeline.record(side, "command", {
      command: "migrate-set-capabilities",
      arguments: { capabilities: list },
    });
    await m.qmp.execute("migrate-set-capabilities", { capabilities: list });
    const after = await m.qmp.execute<MigrationCapabilityStatus[]>("query-migrate-capabilities");
    for (const { capability, state } of list) {
      const now = after.find((c) => c.capability === capability)?.state;
      if (now !== state) {
        throw new MigrationConfigError(
          `${side}: capability ${capability} was set to ${state} but query-migrate-capabilities reads back ${now}`,
        );
      }
    }
  }

  /** Set parameters on one side after checking QEMU knows them, then read them back. */
  async setParameters(side: Side, parameters: MigrationParameters): Promise<void> {
    const m = this.machine(side);
    const before = await m.qmp.execute<MigrationParameters>("query-migrate-parameters");
    for (const name of Object.keys(parameters)) {
      if (!(name in before)) {
        throw new MigrationConfigError(
          `unknown migration parameter "${name}" on the ${side} (QEMU ${m.binary.version}); query-migrate-parameters has: ${Object.keys(before).join(", ")}`,
        );
      }
    }
    this.timeline.record(side, "command", {
      command: "migrate-set-parameters",
      arguments: parameters,
    });
    await m.qmp.execute("migrate-set-parameters", parameters);
    const after = await m.qmp.execute<MigrationParameters>("query-migrate-parameters");
    for (const [name, value] of Object.entries(parameters)) {
      if (JSON.stringify(after[name]) !== JSON.stringify(value)) {
        throw new MigrationConfigError(
          `${side}: parameter ${name} was set to ${JSON.stringify(value)} but query-migrate-parameters reads back ${JSON.stringify(after[name])}`,
        );
      }
    }
  }

  /**
   * query-migrate, info migrate, query-migrate again, of one side, all recorded. The HMP text is
   * bracketed by two QMP reads, so a check knows whether the state moved while it was printed.
   */
  async snapshot(side: Side): Promise<SideSnapshot> {
    const m = this.machine(side);
    const before = await m.qmp.execute<MigrationInfo>("query-migrate");
    this.timeline.record(side, "query-migrate", before);
    this.checkSchema(
      side,
      "query-migrate",
      validateReply(this.schemas[side], "query-migrate", before),
    );
    const infoMigrate = await m.hmp("info migrate");
    this.timeline.record(side, "info-migrate", infoMigrate);
    const migration = await m.qmp.execute<MigrationInfo>("query-migrate");
    this.timeline.record(side, "query-migrate", migration);
    this.checkSchema(
      side,
      "query-migrate",
      validateReply(this.schemas[side], "query-migrate", migration),
    );
    const snap = { migration, infoMigrate, before };
    this.options.onSnapshot?.(side, snap);
    return snap;
  }

  /** Put the destination in listening state. Returns the URI the source must use. */
  async startIncoming(): Promise<string> {
    this.phase = "incoming";
    const transport = this.options.transport ?? "tcp";
    const attempts = transport === "tcp" && this.options.port === undefined ? 5 : 1;
    for (let attempt = 1; ; attempt++) {
      const uri =
        transport === "unix"
          ? `unix:${join(this.destination.dir, "migration.sock")}`
          : `tcp:127.0.0.1:${this.options.port ?? (await freeLoopbackPort())}`;
      if (transport === "tcp" && this.options.port !== undefined) {
        await assertPortFree(this.options.port);
      }
      this.timeline.record("destination", "command", {
        command: "migrate-incoming",
        arguments: { uri },
      });
      try {
        await this.destination.qmp.execute("migrate-incoming", { uri });
        this.uri = uri;
        return uri;
      } catch (error) {
        // A free port can be taken between the probe and QEMU's bind: pick another.
        if (attempt < attempts && /in use/i.test(String((error as Error).message))) continue;
        throw await this.fail(
          `migrate-incoming ${uri} failed: ${(error as Error).message}`,
          "destination",
        );
      }
    }
  }

  /** Start the outgoing migration on the source (returns once QEMU accepted the command). */
  async startMigration(uri = this.uri): Promise<void> {
    if (!uri) throw new Error("startMigration: no URI (call startIncoming first or pass one)");
    this.phase = "migrate";
    this.timeline.record("source", "command", { command: "migrate", arguments: { uri } });
    try {
      await this.source.qmp.execute("migrate", { uri });
    } catch (error) {
      throw await this.fail(`migrate ${uri} was refused: ${(error as Error).message}`, "source");
    }
  }

  /**
   * Wait until `done` holds over the latest snapshots of both sides. Wakes on every event and
   * at least every pollIntervalMs. A source that fails, when `failed` is not what is awaited,
   * ends the wait at once with the diagnostics.
   */
  async waitUntil(
    what: string,
    done: (s: { source: SideSnapshot; destination: SideSnapshot }) => boolean,
    options: { timeoutMs?: number; allowFailed?: boolean } = {},
  ): Promise<{ source: SideSnapshot; destination: SideSnapshot }> {
    this.phase = "wait";
    const timeoutMs = options.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    const poll = this.options.pollIntervalMs ?? 100;
    for (;;) {
      let snaps: { source: SideSnapshot; destination: SideSnapshot };
      try {
        const [source, destination] = await Promise.all([
          this.snapshot("source"),
          this.snapshot("destination"),
        ]);
        snaps = { source, destination };
      } catch (error) {
        const side = this.source.isRunning() ? "destination" : "source";
        throw await this.fail(
          `while waiting for ${what}: could not read the ${side}'s state: ${(error as Error).message}`,
          side,
        );
      }
      if (this.violations.length > 0) {
        throw await this.fail(
          `while waiting for ${what}: replies broke their QEMU's own schema:\n${this.violations.join("\n")}`,
          undefined,
        );
      }
      if (done(snaps)) return snaps;
      for (const side of ["source", "destination"] as const) {
        const status = snaps[side].migration.status;
        if (!options.allowFailed && (status === "failed" || status === "cancelled")) {
          const desc = snaps[side].migration["error-desc"];
          throw await this.fail(
            `while waiting for ${what}: the ${side} reports migration status "${status}"${desc ? ` (${desc})` : ""}`,
            side,
          );
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw await this.fail(
          `timed out after ${timeoutMs} ms waiting for ${what}: source is "${snaps.source.migration.status}", destination is "${snaps.destination.migration.status}"`,
          undefined,
        );
      }
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

  /** Wait until each named side reports one of the statuses. */
  waitForStatus(
    want: Partial<Record<Side, readonly MigrationStatus[]>>,
    options: { timeoutMs?: number; allowFailed?: boolean } = {},
  ): Promise<{ source: SideSnapshot; destination: SideSnapshot }> {
    const what = Object.entries(want)
      .map(([side, statuses]) => `${side} ${statuses?.join("|")}`)
      .join(" and ");
    return this.waitUntil(
      what,
      (s) =>
        Object.entries(want).every(([side, statuses]) =>
          statuses?.includes(s[side as Side].migration.status ?? "none"),
        ),
      {
        ...options,
        allowFailed:
          options.allowFailed ||
          Object.values(want).some((l) => l?.includes("failed") || l?.includes("cancelled")),
      },
    );
  }

  /**
   * The whole precopy flow: incoming, migrate, both sides completed, destination running.
   * Returns the final state of both sides.
   */
  async migrate(
    options: { timeoutMs?: number; ramCheck?: boolean } = {},
  ): Promise<MigrationResult> {
    await this.waitForGuest();
    const started = Date.now();
    const uri = await this.startIncoming();
    await this.startMigration(uri);
    await this.waitForStatus(
      { source: ["completed"], destination: ["completed"] },
      { timeoutMs: options.timeoutMs ?? 60_000 },
    );
    const durationMs = Date.now() - started;
    this.phase = "verify";
    const destinationVm = await this.waitForVm("destination", (s) => s.running, "running");
    const final = { uri, durationMs, ...(await this.finalState(destinationVm)) };
    if (options.ramCheck === false || !this.guest.params) return final;
    const ram = await this.checkRam();
    if (!ram.check.ok) {
      throw await this.fail(
        `guest RAM differs after migration: ${ram.check.summary}`,
        "destination",
      );
    }
    return { ...final, ram };
  }

  /** Before migrating: the guest runs on the source and is dirtying memory. */
  async waitForGuest(): Promise<void> {
    if (!this.guest.params) return;
    this.phase = "guest-start";
    try {
      await waitForGuestPasses(this.source, 1);
    } catch (error) {
      throw await this.fail((error as Error).message, "source");
    }
  }

  /**
   * After a completed migration: the guest still runs on the destination, then (stopped) its
   * RAM holds the boot-block pattern exactly. Recorded in the timeline; returned, not thrown, so
   * a test can look at a failing check.
   */
  async checkRam(): Promise<RamIntegrity> {
    this.phase = "ram-check";
    let ram: RamIntegrity;
    try {
      ram = await checkGuestRam(this.destination, this.guest);
    } catch (error) {
      throw await this.fail((error as Error).message, "destination");
    }
    this.timeline.record("destination", "note", ram.check.summary);
    return ram;
  }

  /** A migration that must fail on the source, e.g. to a port nobody listens on. */
  async migrateExpectingFailure(
    uri: string,
    options: { timeoutMs?: number } = {},
  ): Promise<MigrationResult> {
    const started = Date.now();
    await this.startMigration(uri);
    await this.waitForStatus({ source: ["failed"] }, { timeoutMs: options.timeoutMs ?? 30_000 });
    this.phase = "verify";
    return { uri, durationMs: Date.now() - started, ...(await this.finalState()) };
  }

  /** Poll query-status on one side until `ok` holds (bounded). */
  async waitForVm(
    side: Side,
    ok: (s: StatusInfo) => boolean,
    what: string,
    timeoutMs = 10_000,
  ): Promise<StatusInfo> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.machine(side).queryStatus();
      if (ok(status)) return status;
      if (Date.now() > deadline) {
        throw await this.fail(
          `the ${side} VM did not become ${what} within ${timeoutMs} ms: query-status says ${JSON.stringify(status)}`,
          side,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async finalState(
    destinationVm?: StatusInfo,
  ): Promise<Omit<MigrationResult, "uri" | "durationMs">> {
    const [source, destination, sourceVm, dstVm] = await Promise.all([
      this.snapshot("source"),
      this.snapshot("destination"),
      this.source.queryStatus(),
      destinationVm ?? this.destination.queryStatus(),
    ]);
    if (this.violations.length > 0) {
      throw await this.fail(
        `replies broke their QEMU's own schema:\n${this.violations.join("\n")}`,
        undefined,
      );
    }
    return {
      source: { ...source, vm: sourceVm, events: this.timeline.migrationEvents("source") },
      destination: {
        ...destination,
        vm: dstVm,
        events: this.timeline.migrationEvents("destination"),
      },
    };
  }

  /** Build a MigrationError with both sides' diagnostics (best effort: a side may be dead). */
  async fail(message: string, side: Side | undefined): Promise<MigrationError> {
    // One last look at each side that still answers, so the diagnostics are current.
    await Promise.all(
      (["source", "destination"] as const).map((s) =>
        this.machine(s).isRunning() ? this.snapshot(s).catch(() => undefined) : undefined,
      ),
    );
    const where = side ? `${side}, phase ${this.phase}` : `phase ${this.phase}`;
    return new MigrationError(`[${where}] ${message}`, this.phase, side, this.diagnostics());
  }

  diagnostics(): string {
    return formatDiagnostics({
      phase: this.phase,
      uri: this.uri,
      timeline: this.timeline,
      machines: { source: this.source, destination: this.destination },
    });
  }

  /** Shut both sides down and remove their temp dirs. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.phase = "teardown";
    await Promise.all([this.source.shutdown(), this.destination.shutdown()]);
    rmSync(this.assetsDir, { recursive: true, force: true });
    unregisterPath(this.assetsDir);
  }
}

function isEvent(msg: unknown): msg is QMPEvent {
  return typeof msg === "object" && msg !== null && "event" in msg;
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
        new MigrationConfigError(
          error.code === "EADDRINUSE"
            ? `tcp port ${port} on 127.0.0.1 is already in use by another process; choose another port or leave it unset to get a free one`
            : `tcp port ${port} on 127.0.0.1 cannot be used: ${error.message}`,
        ),
      ),
    );
    server.listen(port, "127.0.0.1", () => server.close(() => resolve()));
  });
}
