// Process-wide registry of what the harness started: QEMU PIDs and temp paths.
// Whatever way this Node process ends (normal exit, SIGINT, SIGTERM, SIGHUP, an uncaught error),
// every registered QEMU gets SIGKILL by its PID and every registered path is removed.
// A SIGKILL of Node itself cannot be caught: QEMU is then ended by its parent-death signal
// (setpriv --pdeathsig, -run-with exit-with-parent), and a run-level sweep (sweepRunDir) removes
// what is left by the PID files QEMU wrote.

import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sharedMemoryDir } from "../util/paths.ts";

interface Entry {
  pid: number;
  label: string;
}

const children = new Map<number, Entry>();
const paths = new Set<string>();
let hooksInstalled = false;

const FATAL_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

function killAllNow(): void {
  for (const { pid } of children.values()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  children.clear();
  for (const path of paths) {
    try {
      rmSync(path, { recursive: true, force: true });
    } catch {
      // best effort at exit: nothing else can be done here
    }
  }
  paths.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  killAllNow();
  for (const s of FATAL_SIGNALS) process.removeListener(s, onSignal);
  // Re-raise so the exit status says which signal ended us, as it would without the hook.
  process.kill(process.pid, signal);
}

function onFatalError(error: unknown): void {
  killAllNow();
  console.error(error);
  process.exit(1);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // What a harness that died without cleaning (SIGKILL, a crash) left is swept by the next one.
  try {
    sweepDeadOwners(process.env.QEMU_MIGTEST_RUN_DIR ?? sharedMemoryDir());
  } catch {
    // best effort: a sweep must never stop a run
  }
  process.on("exit", killAllNow);
  // A test runner owns these in its workers; only claim them in a plain script, where no one
  // else would end the process on a signal.
  for (const s of FATAL_SIGNALS) {
    if (process.listenerCount(s) === 0) process.on(s, onSignal);
  }
  if (process.listenerCount("uncaughtException") === 0) {
    process.on("uncaughtException", onFatalError);
  }
}

export function registerChild(pid: number, label: string): void {
  installHooks();
  children.set(pid, { pid, label });
}

export function unregisterChild(pid: number): void {
  children.delete(pid);
}

export function registerPath(path: string): void {
  installHooks();
  paths.add(path);
  markOwner(path);
}

/** Marks a dir as this process's, so a later run can tell it from a live run's and sweep it. */
const OWNER_FILE = ".qmt-owner";

/** This process's identity: PID and start time (a reused PID has another start time). */
function identity(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22 (starttime), counted after the ")" that ends the command name.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return `${pid} ${fields[19]}`;
  } catch {
    return undefined;
  }
}

function markOwner(path: string): void {
  try {
    if (!statSync(path).isDirectory()) return;
    writeFileSync(join(path, OWNER_FILE), `${identity(process.pid) ?? process.pid}\n`);
  } catch {
    // the dir went already, or is not ours to write
  }
}

/** Whether the process that wrote an owner file still runs (same PID and start time). */
function ownerAlive(ownerText: string): boolean {
  const [pid, start] = ownerText.trim().split(" ");
  const now = identity(Number(pid));
  return (
    now !== undefined && (start === undefined || now === `${pid} ${start}`) && isAlive(Number(pid))
  );
}

export interface DeadOwnerSweep {
  /** Dirs removed, each with what was in it. */
  removed: { dir: string; bytes: number; killed: number[] }[];
}

/** A dir marked by an owner file: the PID that wrote it (and its start time). */
export interface OwnedDir {
  dir: string;
  ownerPid: number;
  ownerText: string;
}

/**
 * Every owned dir under `parent` and one level down inside its `qmt-*` run roots; each run
 * root without an owner file is passed to `onRoot` after its contents were walked.
 */
export function ownedDirs(parent: string, onRoot?: (root: string) => void): OwnedDir[] {
  const out: OwnedDir[] = [];
  const visit = (dir: string, depth: number) => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      let ownerText: string | undefined;
      try {
        ownerText = readFileSync(join(p, OWNER_FILE), "utf8");
      } catch {
        ownerText = undefined;
      }
      if (ownerText !== undefined) {
        out.push({ dir: p, ownerPid: Number(ownerText.trim().split(" ")[0]), ownerText });
      } else if (depth === 0 && e.name.startsWith("qmt-")) {
        visit(p, 1);
        onRoot?.(p);
      }
    }
  };
  visit(parent, 0);
  return out;
}

/**
 * Dirs under `parent` (and one level down, inside a run root) whose owner file names a process
 * that is gone: each QEMU still alive by its PID file is killed, and the dir removed. Empty
 * `qmt-*` run roots older than a minute go too (the vitest root of a killed run).
 */
export function sweepDeadOwners(parent: string): DeadOwnerSweep {
  const report: DeadOwnerSweep = { removed: [] };
  const dead = (d: OwnedDir) => !ownerAlive(d.ownerText);
  const sweep = (d: OwnedDir) => {
    const bytes = du(d.dir);
    const killed = sweepRunDir(d.dir).killed.map((k) => k.pid);
    report.removed.push({ dir: d.dir, bytes, killed });
  };
  const roots: string[] = [];
  for (const d of ownedDirs(parent, (root) => roots.push(root))) if (dead(d)) sweep(d);
  for (const root of roots) {
    try {
      if (readdirSync(root).length === 0 && Date.now() - statSync(root).mtimeMs > 60_000) {
        rmSync(root, { recursive: true, force: true });
        report.removed.push({ dir: root, bytes: 0, killed: [] });
      }
    } catch {
      // raced with its owner
    }
  }
  return report;
}

/** Bytes held by the files under `path` (what a leak costs on tmpfs). */
export function du(path: string): number {
  let total = 0;
  try {
    const st = statSync(path);
    if (!st.isDirectory()) return st.blocks * 512;
    for (const name of readdirSync(path)) total += du(join(path, name));
  } catch {
    // gone meanwhile
  }
  return total;
}

export function unregisterPath(path: string): void {
  paths.delete(path);
}

/** What is registered now: for tests of the registry and for diagnostics. */
export function registered(): { children: Entry[]; paths: string[] } {
  return { children: [...children.values()], paths: [...paths] };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie has exited; only its parent has not reaped it yet.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The command line of a live process, or undefined. */
function processCommandLine(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    return undefined;
  }
}

export interface SweepReport {
  killed: { pid: number; pidFile: string }[];
  removed: string[];
}

/**
 * The run-level safety net: every machine writes QEMU's own -pidfile inside runDir, so after a
 * run (even one whose worker was SIGKILLed) the QEMUs it started are found by their PIDs.
 * A PID counts only if its command line still names that PID file: PIDs get reused.
 */
export function sweepRunDir(runDir: string): SweepReport {
  const report: SweepReport = { killed: [], removed: [] };
  for (const pidFile of findPidFiles(runDir)) {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(pidFile, "utf8").trim(), 10);
    } catch {
      continue;
    }
    if (!Number.isInteger(pid) || pid <= 1) continue;
    const cmdline = processCommandLine(pid);
    if (cmdline?.includes(pidFile) && isAlive(pid)) {
      try {
        process.kill(pid, "SIGKILL");
        report.killed.push({ pid, pidFile });
      } catch {
        // exited between the check and the kill
      }
    }
  }
  rmSync(runDir, { recursive: true, force: true });
  report.removed.push(runDir);
  return report;
}

function findPidFiles(dir: string, depth = 0): string[] {
  if (depth > 3) return [];
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) found.push(...findPidFiles(p, depth + 1));
    else if (e.name === "qemu.pid") found.push(p);
  }
  return found;
}
