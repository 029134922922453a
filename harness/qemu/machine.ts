// One QEMU process with its QMP monitor, serial console and stderr, in a temp dir of its own.
// Launch failures say what QEMU printed and how it ended; shutdown is quit, then SIGTERM, then
// SIGKILL; the process registry covers every way the harness itself can end.

import { closeSync, existsSync, openSync, readSync, rmSync, statfsSync, statSync } from "node:fs";
import type { Socket } from "node:net";
import { basename, join } from "node:path";
import { execa, type Options, type ResultPromise } from "execa";
import pRetry, { AbortError } from "p-retry";
import { dir as tmpDir } from "tmp-promise";
import { QMPClient } from "../qmp/client.ts";
import { QMPConnectError } from "../qmp/errors.ts";
import type { StatusInfo } from "../qmp/qapi.ts";
import { QmpSchema } from "../qmp/schema.ts";
import { runParentDir, sharedMemoryDir } from "../util/paths.ts";
import { PromiseCache } from "../util/promise-cache.ts";
import { hex, indent, quoteCommandLine } from "../util/text.ts";
import { MiB } from "../util/units.ts";
import { type AccelChoice, type AccelRequest, chooseAccel, detectKvm } from "./accel.ts";
import type { QemuArch } from "./arch.ts";
import { probeQemuBinary, type QemuBinaryInfo } from "./binary.ts";
import { machineFiles, qemuArgs, spawnCommand } from "./command-line.ts";
import { readGuestRamFile } from "./guest-ram-file.ts";
import { machineArch } from "./machine-arch.ts";
import {
  registerChild,
  registerPath,
  unregisterChild,
  unregisterPath,
} from "./process-registry.ts";

// query-qmp-schema is hundreds of KiB: read once per binary, not per machine.
const schemaCache = new PromiseCache<string, QmpSchema>();

export interface MachineOptions {
  /** "source", "destination", ...: in every message and in the temp dir's name. */
  name: string;
  /** Path, matrix name or command name of a qemu-system-* (default: qemu-system-x86_64 on PATH). */
  binary?: string;
  accel?: AccelRequest;
  /**
   * -machine type (default: the target's board, `pc` or `virt`); pin a versioned one
   * (pc-i440fx-7.2, virt-7.2) for cross-version pairs.
   */
  machineType?: string;
  /** -cpu model (default: the target's, machine-arch.ts). */
  cpu?: string;
  memoryMiB?: number;
  /** Start as a migration destination waiting for migrate-incoming. */
  incoming?: boolean;
  /** Guest RAM on a shared file under /dev/shm, so the harness can read guest memory in place. */
  ramBackingFile?: boolean;
  /** Arguments that load the guest (firmware, disks). */
  guestArgs?: string[];
  extraArgs?: string[];
  /**
   * Descriptors of this process the QEMU inherits, as its fds 3, 4, ... in this order (for
   * `-add-fd fd=3,...` or `fd:3`): Node cannot pass a descriptor over the QMP socket.
   */
  inheritFds?: readonly (number | Socket)[];
  /** Where the machine's temp dir goes: QEMU_MIGTEST_RUN_DIR, else the OS temp dir. */
  parentDir?: string;
  /** Budget from spawn to a negotiated QMP session. */
  startTimeoutMs?: number;
  onQmpMessage?: (direction: "sent" | "received", message: unknown) => void;
}

export interface ExitInfo {
  exitCode?: number;
  signal?: string;
}

export class MachineError extends Error {
  override name = "MachineError";
}

/** QEMU did not come up: carries how it ended and what it printed. */
export class MachineLaunchError extends MachineError {
  override name = "MachineLaunchError";
  constructor(
    message: string,
    readonly commandLine: string[],
    readonly stderrTail: string,
    readonly exit?: ExitInfo,
  ) {
    super(
      `${message}\n  command line: ${quoteCommandLine(commandLine)}\n  stderr:\n${indent(stderrTail || "(empty)")}`,
    );
  }
}

const SUN_PATH_MAX = 107; // sockaddr_un.sun_path is 108 bytes with the terminating NUL
const SETPRIV = "/usr/bin/setpriv";

export class Machine {
  readonly qmp: QMPClient;
  /** Logs as they were at shutdown, for diagnostics after the temp dir is gone. */
  private finalStderr?: string;
  private finalSerial?: string;
  private exitInfo?: ExitInfo;
  private shuttingDown?: Promise<ExitInfo>;

  private constructor(
    readonly name: string,
    readonly binary: QemuBinaryInfo,
    readonly accel: AccelChoice,
    readonly dir: string,
    readonly commandLine: string[],
    private readonly child: ResultPromise,
    readonly pid: number,
    readonly exited: Promise<ExitInfo>,
    readonly ramFile: string | undefined,
    qmp: QMPClient,
  ) {
    this.qmp = qmp;
    exited.then((e) => {
      this.exitInfo = e;
    });
  }

  /** The target this QEMU emulates, as the binary itself reported it. */
  get arch(): QemuArch {
    return this.binary.arch;
  }

  /** Guest-physical address of RAM's first byte (offset 0 of the RAM backing file). */
  get ramBase(): number {
    return machineArch(this.binary.arch).ramBase;
  }

  get qmpSocket(): string {
    return machineFiles(this.dir).qmpSocket;
  }
  get serialPath(): string {
    return machineFiles(this.dir).serialLog;
  }
  get stderrPath(): string {
    return machineFiles(this.dir).stderrLog;
  }
  /** Set once the process has ended. */
  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  static async launch(options: MachineOptions): Promise<Machine> {
    const binary = await probeQemuBinary(options.binary ?? "qemu-system-x86_64");
    const accel = chooseAccel(options.accel ?? "auto", detectKvm(), binary.accels, binary.arch);
    const dir = await createMachineDir(options);
    const ramFile = options.ramBackingFile ? ramFilePath(dir) : undefined;
    const target = machineArch(binary.arch);
    const cpu =
      options.cpu ?? (options.machineType === "none" ? undefined : target.cpu(accel.accel));
    const commandLine = [
      binary.path,
      ...qemuArgs({
        ...options,
        machineType: options.machineType ?? target.defaultMachineType,
        ramBlockId: target.ramBlockId,
        ...(cpu ? { cpu } : {}),
        accel: accel.accel,
        exitWithParent: binary.exitWithParent,
        dir,
        ramFile,
      }),
    ];
    if (ramFile) registerPath(ramFile);
    const launching: Launching = {
      name: options.name,
      binary,
      dir,
      ramFile,
      commandLine,
      inheritFds: options.inheritFds ?? [],
    };
    const { child, pid, exited } = await spawnQemu(launching);
    const qmp = await connectOrKill(launching, options, pid, exited);
    return new Machine(
      options.name,
      binary,
      accel,
      dir,
      commandLine,
      child,
      pid,
      exited,
      ramFile,
      qmp,
    );
  }

  /** This binary's own QAPI schema, read once per binary path and cached. */
  schema(): Promise<QmpSchema> {
    return schemaCache.get(this.binary.path, () =>
      this.qmp.execute<unknown>("query-qmp-schema").then((r) => QmpSchema.fromReply(r)),
    );
  }

  /**
   * Guest-physical memory [address, address + length). With ramBackingFile it is read in place
   * from the shared RAM file (file offset == guest-physical - ramBase, below 2 GiB on pc/q35);
   * otherwise QEMU dumps it with pmemsave first. Stop the VM first for a consistent picture.
   */
  async readGuestMemory(address: number, length: number): Promise<Buffer> {
    if (this.ramFile) {
      if (address < this.ramBase) {
        throw new RangeError(
          `${this.name}: ${hex(address)} is below guest RAM, which starts at ${hex(this.ramBase)} on ${this.arch}`,
        );
      }
      return readGuestRamFile(this.ramFile, address - this.ramBase, length);
    }
    const dump = join(this.dir, `pmemsave-${address.toString(16)}.bin`);
    await this.qmp.execute("pmemsave", { val: address, size: length, filename: dump });
    try {
      return await readGuestRamFile(dump, 0, length);
    } finally {
      rmSync(dump, { force: true });
    }
  }

  /**
   * A file holding guest RAM from its first byte (guest-physical `base`, the ramBase) up to
   * `end`: the shared RAM file itself, or a pmemsave dump in this machine's dir (removed by
   * `release`).
   */
  async guestMemoryFile(end: number): Promise<{ path: string; base: number; release: () => void }> {
    const base = this.ramBase;
    if (this.ramFile) return { path: this.ramFile, base, release: () => undefined };
    const dump = join(this.dir, "pmemsave-ram.bin");
    await this.qmp.execute("pmemsave", { val: base, size: end - base, filename: dump });
    return { path: dump, base, release: () => rmSync(dump, { force: true }) };
  }

  /** An HMP command through QMP's human-monitor-command. */
  hmp(commandLine: string, timeoutMs?: number): Promise<string> {
    return this.qmp.hmp(commandLine, timeoutMs === undefined ? undefined : { timeoutMs });
  }

  async queryStatus(): Promise<StatusInfo> {
    return this.qmp.execute<StatusInfo>("query-status");
  }

  /** The last bytes of the serial console. */
  serialTail(maxBytes = 4096): string {
    return this.finalSerial ?? tailOf(this.serialPath, maxBytes);
  }

  stderrTail(maxBytes = 4096): string {
    return this.finalStderr ?? tailOf(this.stderrPath, maxBytes);
  }

  /** Full serial output so far (for marker counting). */
  serialText(): string {
    return this.finalSerial ?? tailOf(this.serialPath, Number.MAX_SAFE_INTEGER);
  }

  isRunning(): boolean {
    return this.exitInfo === undefined;
  }

  /**
   * quit over QMP, then SIGTERM, then SIGKILL, each with its own wait; then remove the temp dir.
   * Idempotent. Resolves with how the process ended.
   */
  shutdown(options: { timeoutMs?: number } = {}): Promise<ExitInfo> {
    this.shuttingDown ??= this.doShutdown(options.timeoutMs ?? 10_000);
    return this.shuttingDown;
  }

  private async doShutdown(timeoutMs: number): Promise<ExitInfo> {
    const step = Math.max(500, Math.floor(timeoutMs / 3));
    if (this.isRunning() && this.qmp.runstate === "running") {
      // quit may race with the disconnect it causes; either outcome is fine.
      await this.qmp.execute("quit", undefined, { timeoutMs: step }).catch(() => undefined);
    }
    let exit = await waitFor(this.exited, step);
    if (!exit) {
      this.signal("SIGTERM");
      exit = await waitFor(this.exited, step);
    }
    if (!exit) {
      this.signal("SIGKILL");
      exit = await this.exited;
    }
    await this.qmp.disconnect().catch(() => undefined);
    this.finalStderr = tailOf(this.stderrPath);
    this.finalSerial = tailOf(this.serialPath, MiB);
    cleanupPaths(this.dir, this.ramFile);
    return exit;
  }

  /** Send a signal to this QEMU, by its PID. */
  signal(signal: NodeJS.Signals): void {
    if (!this.isRunning()) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // exited meanwhile
    }
  }

  /** For tests that must see an abrupt death (the child handle is otherwise private). */
  get childProcess(): ResultPromise {
    return this.child;
  }
}

/** What a launch has settled before QEMU runs: enough to clean up and to explain a failure. */
interface Launching {
  name: string;
  binary: QemuBinaryInfo;
  dir: string;
  ramFile: string | undefined;
  commandLine: string[];
  inheritFds: readonly (number | Socket)[];
}

/** The machine's own temp dir, registered for removal; refused when its socket path cannot fit. */
async function createMachineDir(options: MachineOptions): Promise<string> {
  const parentDir = runParentDir(options.parentDir, defaultParentDir);
  const tmp = await tmpDir({ tmpdir: parentDir, prefix: `${options.name.slice(0, 8)}-` });
  const dir = tmp.path;
  registerPath(dir);
  const { qmpSocket } = machineFiles(dir);
  if (Buffer.byteLength(qmpSocket) > SUN_PATH_MAX) {
    rmSync(dir, { recursive: true, force: true });
    unregisterPath(dir);
    throw new MachineError(
      `QMP socket path ${qmpSocket} is ${Buffer.byteLength(qmpSocket)} bytes, over the ${SUN_PATH_MAX}-byte limit of a Unix socket path; set QEMU_MIGTEST_RUN_DIR or TMPDIR to a shorter directory`,
    );
  }
  return dir;
}

/** Starts QEMU with its output in the machine's log, registered with the process registry. */
async function spawnQemu(
  l: Launching,
): Promise<{ child: ResultPromise; pid: number; exited: Promise<ExitInfo> }> {
  const setpriv = existsSync(SETPRIV) ? SETPRIV : undefined;
  const { file, args } = spawnCommand(l.commandLine, setpriv);
  const log = machineFiles(l.dir).stderrLog;
  const child = execa(file, args, {
    stdio: inheritedStdio(log, l.inheritFds),
    reject: false,
    cleanup: true,
    // No graceful step here: shutdown() does quit and SIGTERM itself.
    forceKillAfterDelay: false,
  });
  const pid = child.pid;
  if (pid === undefined) {
    const r = await child;
    cleanupPaths(l.dir, l.ramFile);
    throw new MachineLaunchError(
      `${l.name}: could not start ${l.binary.path}: ${r.shortMessage}`,
      l.commandLine,
      "",
    );
  }
  registerChild(pid, `${l.name} ${l.binary.path}`);
  const exited: Promise<ExitInfo> = child.then((r) => {
    unregisterChild(pid);
    return { exitCode: r.exitCode, signal: r.signal };
  });
  return { child, pid, exited };
}

/**
 * stdin ignored, stdout and stderr to the log, then the inherited descriptors as the child's
 * fds 3, 4, ... Node's spawn takes any descriptor number or socket there (execa passes them
 * through); execa's types only list 3..9, hence the cast.
 */
function inheritedStdio(log: string, fds: readonly (number | Socket)[]): Options["stdio"] {
  const file = { file: log, append: true } as const;
  return ["ignore", file, file, ...fds] as unknown as Options["stdio"];
}

/** A negotiated QMP session; otherwise QEMU is killed, its dir removed, and the error says why. */
async function connectOrKill(
  l: Launching,
  options: MachineOptions,
  pid: number,
  exited: Promise<ExitInfo>,
): Promise<QMPClient> {
  const newClient = () =>
    new QMPClient({
      name: l.name,
      ...(options.onQmpMessage ? { onMessage: options.onQmpMessage } : {}),
    });
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  try {
    return await connectWhileAlive(
      newClient,
      machineFiles(l.dir).qmpSocket,
      exited,
      startTimeoutMs,
    );
  } catch (error) {
    const exit = await Promise.race([exited, delay(500).then(() => undefined)]);
    if (!exit) {
      process.kill(pid, "SIGKILL");
      await exited;
    }
    const stderr = tailOf(machineFiles(l.dir).stderrLog);
    cleanupPaths(l.dir, l.ramFile);
    if (exit) {
      throw new MachineLaunchError(
        `${l.name}: QEMU ${l.binary.version} exited during start-up (${describeExit(exit)})`,
        l.commandLine,
        stderr,
        exit,
      );
    }
    throw new MachineLaunchError(
      `${l.name}: ${(error as Error).message}; the process was killed`,
      l.commandLine,
      stderr,
    );
  }
}

/**
 * The first line on a connection was not the greeting (seen under load: an event such as
 * RESUME came first, the greeting having gone to an earlier attempt's connection). A fresh
 * connection gets a fresh greeting, so that one is worth another attempt; silence is not.
 */
function greetingLost(error: QMPConnectError): boolean {
  return error.message.includes("expected the QMP greeting, got");
}

/** Connect a fresh client per attempt (a failed client is spent) until QEMU greets or dies. */
async function connectWhileAlive(
  newClient: () => QMPClient,
  socket: string,
  exited: Promise<ExitInfo>,
  timeoutMs: number,
): Promise<QMPClient> {
  const deadline = Date.now() + timeoutMs;
  let exit: ExitInfo | undefined;
  exited.then((e) => {
    exit = e;
  });
  return pRetry(
    async () => {
      if (exit) throw new AbortError(`QEMU exited (${describeExit(exit)})`);
      if (!existsSync(socket)) throw new Error(`QMP socket ${socket} did not appear`);
      const left = deadline - Date.now();
      const qmp = newClient();
      await qmp.connect(socket, { timeoutMs: Math.max(200, left) });
      return qmp;
    },
    {
      // QEMU creates its socket some tens of ms after exec: poll finely at first.
      retries: 10_000,
      minTimeout: 5,
      maxTimeout: 50,
      factor: 1.2,
      maxRetryTime: timeoutMs,
      shouldRetry: ({ error }) =>
        // A socket that accepts but never greets will not start greeting on a retry.
        !exit &&
        Date.now() < deadline &&
        !(error instanceof QMPConnectError && error.phase === "greeting" && !greetingLost(error)),
    },
  ).catch((error: Error) => {
    if (exit) throw new Error(`QEMU exited (${describeExit(exit)})`);
    throw new Error(
      `no QMP session within ${timeoutMs} ms (${error.message}); QEMU is still running but its monitor never answered`,
    );
  });
}

function describeExit(e: ExitInfo): string {
  if (e.signal) return `killed by ${e.signal}`;
  return `exit code ${e.exitCode ?? "unknown"}`;
}

function cleanupPaths(dir: string, ramFile?: string): void {
  rmSync(dir, { recursive: true, force: true });
  unregisterPath(dir);
  if (ramFile) {
    rmSync(ramFile, { force: true });
    unregisterPath(ramFile);
  }
}

const TMPFS_MAGIC = 0x01021994;

/** Temp dirs go on tmpfs when there is one: guest RAM files then live inside them. */
export function defaultParentDir(): string {
  return sharedMemoryDir();
}

/**
 * Where guest RAM goes when it must be readable in place: inside the machine's own dir when that
 * is on tmpfs, so whatever removes the dir (shutdown, the exit hooks, the run-level sweep after a
 * SIGKILL) removes the RAM too; else a uniquely named file on /dev/shm.
 */
function ramFilePath(dir: string): string {
  if (statfsSync(dir).type === TMPFS_MAGIC) return join(dir, "guest.ram");
  return join(sharedMemoryDir(), `qmt-${basename(dir)}.ram`);
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

async function waitFor<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([p, delay(ms).then(() => undefined)]);
}

/** The last `maxBytes` of a file, or "" when it does not exist. */
function tailOf(path: string, maxBytes = 4096): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return "";
  }
  try {
    const size = statSync(path).size;
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}
