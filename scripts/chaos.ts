// Chaos: interrupt N runs of `qemu-migtest migrate` at random moments and count what each left:
// QEMU processes, unix sockets, temp dirs and bytes in /dev/shm. Interruptions rotate through
// SIGKILL, SIGINT and SIGTERM of the runner and SIGKILL of its source or destination QEMU.
// A run's leftovers are counted right after it ended, and again after the next run started
// (its process registry sweeps what a dead run left).
//
//   npx tsx scripts/chaos.ts [--runs 20] [--binary 11.1] [--seed 1]

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { execa } from "execa";
import { du, isAlive, ownedDirs, sweepDeadOwners } from "../harness/qemu/process-registry.ts";
import { sharedMemoryDir } from "../harness/util/paths.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "20" },
    binary: { type: "string", default: "11.1" },
    seed: { type: "string", default: "1" },
  },
});
const runs = Number(values.runs);
let seed = Number(values.seed);
/** Deterministic per seed (mulberry32), so a bad run can be replayed. */
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const MODES = [
  "runner SIGKILL",
  "runner SIGINT",
  "runner SIGTERM",
  "source QEMU SIGKILL",
  "destination QEMU SIGKILL",
] as const;

interface Leftovers {
  qemu: number[];
  sockets: number;
  dirs: string[];
  bytes: number;
}

function countSockets(dir: string): number {
  let n = 0;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isSocket()) n++;
      else if (e.isDirectory()) n += countSockets(p);
    }
  } catch {
    // gone
  }
  return n;
}

/** QEMUs whose command line names one of the run's dirs (their own PID files live there). */
function qemuOf(dirs: string[]): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
      if (cmd.includes("qemu-system") && dirs.some((d) => cmd.includes(d)) && isAlive(+name)) {
        found.push(Number(name));
      }
    } catch {
      // exited
    }
  }
  return found;
}

/** Dirs in /dev/shm (and its qmt-* roots) whose owner file names `pid`. */
function dirsOwnedBy(pid: number): string[] {
  return ownedDirs(sharedMemoryDir())
    .filter((d) => d.ownerPid === pid)
    .map((d) => d.dir);
}

function leftovers(pid: number, reported: string[]): Leftovers {
  const dirs = [...new Set([...reported.filter((d) => existsSync(d)), ...dirsOwnedBy(pid)])];
  return {
    qemu: qemuOf(reported),
    sockets: dirs.reduce((n, d) => n + countSockets(d), 0),
    dirs,
    bytes: dirs.reduce((n, d) => n + du(d), 0),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await sleep(50);
}

interface RunFigures {
  n: number;
  mode: (typeof MODES)[number];
  atMs: number;
  state: string;
  exit: string;
  left: Leftovers;
  afterSweep?: Leftovers;
  runner: number;
  dirs: string[];
}

async function oneRun(n: number): Promise<RunFigures> {
  const mode = MODES[n % MODES.length] as (typeof MODES)[number];
  // Random moment: anywhere from QEMU's start-up to the middle of the migration.
  const atMs = Math.round(200 + random() * 2500);
  const child = execa(
    process.execPath,
    [
      "--import",
      "tsx",
      "scripts/migrate.ts",
      "--binary",
      values.binary as string,
      "--max-bandwidth",
      "40000",
      "--progress",
      "plain",
    ],
    { cwd: repo, reject: false, all: true, buffer: true, timeout: 90_000 },
  );
  const pids: Record<string, number> = {};
  const dirs: string[] = [];
  let state = "starting";
  child.all?.on("data", (chunk: Buffer) => {
    for (const m of chunk
      .toString()
      .matchAll(/^(source|destination): QEMU \S+ pid (\d+) .* dir (\S+)$/gm)) {
      pids[m[1] as string] = Number(m[2]);
      if (m[3]) dirs.push(m[3]);
      state = "launched";
    }
    if (/source migration status: active/.test(chunk.toString())) state = "active";
  });
  await sleep(atMs);
  const runner = child.pid as number;
  if (mode.startsWith("runner")) {
    child.kill(mode.split(" ")[1] as NodeJS.Signals);
  } else {
    const side = mode.startsWith("source") ? "source" : "destination";
    await eventually(() => pids[side] !== undefined, 20_000);
    const pid = pids[side];
    // Only the QEMU this run started, by the PID it reported.
    if (pid !== undefined) process.kill(pid, "SIGKILL");
  }
  const r = await child;
  const exit = r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}`;
  // QEMU's parent-death signal needs a moment.
  await eventually(() => qemuOf(dirs).length === 0, 3000);
  return { n, mode, atMs, state, exit, left: leftovers(runner, dirs), runner, dirs };
}

// As a user runs it: temp dirs straight under /dev/shm, no run root to sweep them.
delete process.env.QEMU_MIGTEST_RUN_DIR;
const results: RunFigures[] = [];
const stale = sweepDeadOwners(sharedMemoryDir());
console.log(
  `chaos: ${runs} interruptions of qemu-migtest migrate --binary ${values.binary} (seed ${values.seed}); swept ${stale.removed.length} stale dir(s) first`,
);
for (let n = 0; n < runs; n++) {
  const f = await oneRun(n);
  results.push(f);
  const l = f.left;
  console.log(
    `#${String(n + 1).padStart(2)} ${f.mode.padEnd(24)} at ${String(f.atMs).padStart(4)} ms (${f.state.padEnd(8)}) ${f.exit.padEnd(16)} left: ${l.qemu.length} QEMU, ${l.sockets} sockets, ${l.dirs.length} dirs, ${l.bytes} bytes`,
  );
}
// Each run swept what the ones before it left when it registered its first dir (a run killed
// before that swept nothing); a last harness start sweeps the rest, as any next run would.
const before = results.reduce(
  (n, r) => n + leftovers(r.runner, [...r.dirs, ...r.left.dirs]).dirs.length,
  0,
);
const final = sweepDeadOwners(sharedMemoryDir());
console.log(
  `left before the last sweep: ${before} dir(s); the last sweep removed ${final.removed.length}`,
);
for (const r of results) r.afterSweep = leftovers(r.runner, [...r.dirs, ...r.left.dirs]);
const sum = (pick: (l: Leftovers) => number, of: "left" | "afterSweep") =>
  results.reduce((n, r) => n + pick((r[of] ?? r.left) as Leftovers), 0);
for (const of of ["left", "afterSweep"] as const) {
  console.log(
    `${of === "left" ? "right after the interruption" : "after the next run's sweep "}: ${sum((l) => l.qemu.length, of)} QEMU processes, ${sum((l) => l.sockets, of)} sockets, ${sum((l) => l.dirs.length, of)} temp dirs, ${sum((l) => l.bytes, of)} bytes in /dev/shm`,
  );
}
const leaked = results.some((r) => (r.afterSweep?.dirs.length ?? 0) > 0 || r.left.qemu.length > 0);
process.exitCode = leaked ? 1 : 0;
