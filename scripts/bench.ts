// Guest workload and RAM integrity figures on this host: npm run bench [-- --help].
// Not a test: it prints what things cost (boot to first marker, the paced dirty rate asked and
// measured, RAM check throughput by read path) for every QEMU under test and every accelerator
// that runs here.

import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { integer, parseFlags, UsageError } from "../harness/cli/args.ts";
import {
  type BootblockArch,
  bootblockArch,
  parseBootblockSerial,
} from "../harness/guest/bootblock.ts";
import { DEFAULT_RATE_TOLERANCE } from "../harness/guest/dirty-rate.ts";
import { measureDirtyRate, prepareGuest, waitForGuestPasses } from "../harness/guest/guest.ts";
import {
  checkBootblockRam,
  checkBootblockRamFile,
  type RamCheckOptions,
  type RamCheckResult,
  readBootblockStatus,
} from "../harness/guest/ram-check.ts";
import { MigrationPair } from "../harness/migration/pair.ts";
import { detectKvm, kvmArchMismatch } from "../harness/qemu/accel.ts";
import { hostQemuArch, type QemuArch } from "../harness/qemu/arch.ts";
import {
  type BinaryUnderTest,
  selectBinariesUnderTest,
} from "../harness/qemu/binaries-under-test.ts";
import { probeQemuBinary } from "../harness/qemu/binary.ts";
import { defaultParentDir, Machine } from "../harness/qemu/machine.ts";
import { registerPath, unregisterPath } from "../harness/qemu/process-registry.ts";

const MiB = 1024 * 1024;
const TARGET_MS = 1000;

const USAGE = `usage: npm run bench -- [options]
       npm run bench -- --scenario [--binary SPEC] [--accel tcg|kvm] [--pairs N] [--dirty-rate MiB/s]
                     one scenario against the bare QMP floor (scripts/bench-scenario.ts)

  --binary SPEC      QEMU to measure (matrix name, path or command); repeatable.
                     Default: QEMU_MIGTEST_BINARIES, else every installed matrix version.
  --accel tcg|kvm    accelerator; repeatable. Default: tcg, plus kvm when /dev/kvm is usable.
  --reps N           repetitions of each measurement (default 3)
  --only LIST        sections to run: boot, dirty-rate, ram-check (default all)
  --rates LIST       dirty rates to ask for, MiB/s, 0 = unpaced (default 8,32,128,0)
  --sample-ms N      host time each dirty-rate sample covers (default 2000)
  --sizes LIST       RAM check sizes in MiB (default 100,1024)
  --no-migration     skip the RAM checks after a real migration
  --json             print the results as JSON instead of tables
`;

type Accel = "tcg" | "kvm";
const SECTIONS = ["boot", "dirty-rate", "ram-check"] as const;
type Section = (typeof SECTIONS)[number];
type ReadPath = "shared-file" | "pmemsave";
/** buffer: Machine.readGuestMemory + checkBootblockRam; stream: checkBootblockRamFile. */
type Method = "buffer" | "stream";

interface Stat {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

interface PhaseSample {
  /** Milliseconds per phase; `total` is stop to verdict. */
  phases: Record<string, number>;
  verdict: string;
}

interface RamCheckFigure {
  sizeMiB: number;
  path: ReadPath;
  method: Method;
  after: "run" | "migration";
  phases: Record<string, Stat>;
  verdicts: string[];
}

interface ComboResult {
  qemu: { label: string; version: string; path: string; arch: QemuArch };
  accel: string;
  boot: { boot: "bios" | "disk"; qmp: Stat; start: Stat; firstPass: Stat }[];
  /** Per asked rate (MiB/s, 0 = unpaced): what the guest dirtied, and its TSC calibration. */
  dirtyRates: {
    askedMiBps: number;
    mibPerSecond: Stat;
    tscHz: Stat;
    spreadPpm: Stat;
    rejected: Stat;
  }[];
  ramCheck: RamCheckFigure[];
  errors: string[];
}

function stat(samples: number[]): Stat {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1
      ? (sorted[mid] ?? Number.NaN)
      : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return {
    median,
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
    samples,
  };
}

function phaseStats(samples: PhaseSample[]): Record<string, Stat> {
  const out: Record<string, Stat> = {};
  for (const name of Object.keys(samples[0]?.phases ?? {})) {
    out[name] = stat(samples.map((s) => s.phases[name] ?? Number.NaN));
  }
  return out;
}

const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(process.env.QEMU_MIGTEST_RUN_DIR ?? defaultParentDir(), prefix));
  registerPath(dir);
  return dir;
}

function dropDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  unregisterPath(dir);
}

/** Launch → QMP ready, → MIGT:START on serial, → first pass marker. */
async function bootOnce(
  b: BinaryUnderTest,
  accel: Accel,
  boot: "bios" | "disk",
): Promise<{ qmp: number; start: number; firstPass: number }> {
  const dir = tempDir("bench-boot-");
  try {
    // Unpaced: "first pass" is then how soon the guest has dirtied its whole range.
    const guest = await prepareGuest(
      { kind: "bootblock", boot, dirtyRateMiBps: 0 },
      128,
      dir,
      b.arch,
    );
    const t0 = now();
    const m = await Machine.launch({
      name: `boot-${boot}`,
      binary: b.path,
      accel,
      memoryMiB: 128,
      guestArgs: guest.args,
      parentDir: dir,
    });
    const qmp = now() - t0;
    try {
      let start: number | undefined;
      const deadline = t0 + 120_000;
      for (;;) {
        const state = parseBootblockSerial(m.serialText());
        if (state.error) throw new Error(`guest reported ${state.error}`);
        if (state.started && start === undefined) start = now() - t0;
        if (state.started && state.passes >= 1) {
          return { qmp, start: start ?? qmp, firstPass: now() - t0 };
        }
        if (now() > deadline) throw new Error(`no boot-block marker within 120 s (${boot})`);
        await sleep(2);
      }
    } finally {
      await m.shutdown();
    }
  } finally {
    dropDir(dir);
  }
}

interface CheckContext {
  machine: Machine;
  /** Where the target's RAM, status block and range sit (guest-physical). */
  layout: BootblockArch;
  /** The range's end, guest-physical; every read starts at the first byte of RAM. */
  rangeEnd: number;
}

function checkContext(machine: Machine, sizeMiB: number): CheckContext {
  const layout = bootblockArch(machine.arch);
  return { machine, layout, rangeEnd: layout.ramBase + (1 + sizeMiB) * MiB };
}

/** Bytes from the first byte of RAM to the range's end. */
const readLength = (ctx: CheckContext) => ctx.rangeEnd - ctx.layout.ramBase;

function checkOptions(ctx: CheckContext, passCounter?: number): RamCheckOptions {
  return {
    base: ctx.layout.ramBase,
    rangeStart: ctx.layout.defaultRangeStart,
    rangeEnd: ctx.rangeEnd,
    ...(passCounter === undefined ? {} : { passCounter }),
  };
}

async function passCounterOf(ctx: CheckContext): Promise<number | undefined> {
  const { ramBase, passCounterAddress, arch } = ctx.layout;
  const head = await ctx.machine.readGuestMemory(ramBase, passCounterAddress + 8 - ramBase);
  return readBootblockStatus(head, ramBase, arch)?.passCounter;
}

/**
 * Read and check a stopped guest's range by one method; phases in ms. The pass counter is read
 * first in both (a tiny read), as the harness does.
 */
async function readAndCheck(
  ctx: CheckContext,
  method: Method,
): Promise<{ phases: Record<string, number>; result: RamCheckResult }> {
  const m = ctx.machine;
  let t = now();
  const passCounter = await passCounterOf(ctx);
  const phases: Record<string, number> = { status: now() - t };
  if (method === "buffer") {
    t = now();
    const mem = await m.readGuestMemory(ctx.layout.ramBase, readLength(ctx));
    phases.read = now() - t;
    t = now();
    const result = checkBootblockRam(mem, checkOptions(ctx, passCounter));
    phases.check = now() - t;
    return { phases, result };
  }
  let file = m.ramFile;
  if (!file) {
    file = join(m.dir, "bench-dump.bin");
    t = now();
    await m.qmp.execute("pmemsave", {
      val: ctx.layout.ramBase,
      size: readLength(ctx),
      filename: file,
    });
    phases.dump = now() - t;
  }
  try {
    t = now();
    const result = await checkBootblockRamFile(file, checkOptions(ctx, passCounter));
    phases["read+check"] = now() - t;
    if (file !== m.ramFile) {
      // Freeing a dump of guest RAM on tmpfs is part of the cost of that path.
      t = now();
      rmSync(file, { force: true });
      phases["rm dump"] = now() - t;
    }
    return { phases, result };
  } finally {
    if (file !== m.ramFile) rmSync(file, { force: true });
  }
}

/** One machine running the guest: reps × (cont, a few passes, stop, read, check) per method. */
async function ramCheckOnRun(
  b: BinaryUnderTest,
  accel: Accel,
  sizeMiB: number,
  path: ReadPath,
  reps: number,
): Promise<RamCheckFigure[]> {
  const dir = tempDir("bench-ram-");
  const memoryMiB = memoryFor(sizeMiB);
  try {
    // Unpaced, so "a few passes" between checks takes milliseconds at any size.
    const guest = await prepareGuest(
      { kind: "bootblock", rangeEndMiB: 1 + sizeMiB, dirtyRateMiBps: 0 },
      memoryMiB,
      dir,
      b.arch,
    );
    const m = await Machine.launch({
      name: `ram-${sizeMiB}`,
      binary: b.path,
      accel,
      memoryMiB,
      guestArgs: guest.args,
      ramBackingFile: path === "shared-file",
      parentDir: dir,
    });
    try {
      const ctx = checkContext(m, sizeMiB);
      await waitForGuestPasses(m, 2, 120_000);
      const figures: RamCheckFigure[] = [];
      for (const method of ["buffer", "stream"] as const) {
        const samples: PhaseSample[] = [];
        for (let i = 0; i < reps; i++) {
          const passes = parseBootblockSerial(m.serialText()).passes;
          if (!(await m.queryStatus()).running) await m.qmp.execute("cont");
          await waitForGuestPasses(m, passes + 2, 60_000);
          const t0 = now();
          await m.qmp.execute("stop");
          const stop = now() - t0;
          const { phases, result } = await readAndCheck(ctx, method);
          samples.push({
            phases: { stop, ...phases, total: now() - t0 },
            verdict: result.summary,
          });
        }
        figures.push(figure(sizeMiB, path, method, "run", samples));
      }
      return figures;
    } finally {
      await m.shutdown();
    }
  } finally {
    dropDir(dir);
  }
}

/** A real migration, then the harness's own pair.checkRam() timed, then each method again. */
async function ramCheckAfterMigration(
  b: BinaryUnderTest,
  accel: Accel,
  sizeMiB: number,
  path: ReadPath,
): Promise<RamCheckFigure[]> {
  const dir = tempDir("bench-mig-");
  try {
    const pair = await MigrationPair.launch({
      binary: b.path,
      accel,
      memoryMiB: memoryFor(sizeMiB),
      guest: { kind: "bootblock", rangeEndMiB: 1 + sizeMiB },
      destination: { ramBackingFile: path === "shared-file" },
      parentDir: dir,
    });
    try {
      await pair.migrate({ ramCheck: false, timeoutMs: 180_000 });
      const t0 = now();
      const ram = await pair.checkRam();
      const total = now() - t0;
      if (!ram.check.ok) throw new Error(`RAM check after migration: ${ram.check.summary}`);
      const figures = [
        // pair.checkRam() streams the range (harness/guest/guest.ts).
        figure(sizeMiB, path, "stream", "migration", [
          { phases: { "checkRam (liveness+stop+read+check)": total }, verdict: ram.check.summary },
        ]),
      ];
      // The destination is stopped now: the read and check alone, by each method.
      const ctx = checkContext(pair.destination, sizeMiB);
      for (const method of ["buffer", "stream"] as const) {
        const t = now();
        const { phases, result } = await readAndCheck(ctx, method);
        figures.push(
          figure(sizeMiB, path, method, "migration", [
            { phases: { ...phases, "total (stopped)": now() - t }, verdict: result.summary },
          ]),
        );
      }
      return figures;
    } finally {
      await pair.close();
    }
  } finally {
    dropDir(dir);
  }
}

function figure(
  sizeMiB: number,
  path: ReadPath,
  method: Method,
  after: "run" | "migration",
  samples: PhaseSample[],
): RamCheckFigure {
  const bad = samples.find((s) => !s.verdict.startsWith("RAM check OK"));
  if (bad) throw new Error(`${sizeMiB} MiB via ${path}/${method}: ${bad.verdict}`);
  return {
    sizeMiB,
    path,
    method,
    after,
    phases: phaseStats(samples),
    verdicts: samples.map((s) => s.verdict),
  };
}

/** Guest RAM for a range of `sizeMiB` from 1 MiB: room for the range plus a little. */
function memoryFor(sizeMiB: number): number {
  return sizeMiB <= 100 ? 128 : Math.ceil((sizeMiB + 1 + 64) / 64) * 64;
}

async function benchCombo(
  b: BinaryUnderTest,
  accel: Accel,
  accelLabel: string,
  opts: {
    reps: number;
    sizes: number[];
    migration: boolean;
    sections: Section[];
    rates: number[];
    sampleMs: number;
  },
  log: (line: string) => void,
): Promise<ComboResult> {
  const result: ComboResult = {
    qemu: { label: b.label, version: b.version, path: b.path, arch: b.arch },
    accel: accelLabel,
    boot: [],
    dirtyRates: [],
    ramCheck: [],
    errors: [],
  };
  const attempt = async (what: string, fn: () => Promise<void>) => {
    log(`  ${b.label} ${b.arch} ${accelLabel}: ${what}`);
    try {
      await fn();
    } catch (error) {
      result.errors.push(`${what}: ${(error as Error).message.split("\n")[0]}`);
    }
  };
  for (const boot of opts.sections.includes("boot") ? bootblockArch(b.arch).boots : []) {
    await attempt(`boot ${boot}`, async () => {
      const runs = [];
      for (let i = 0; i < opts.reps; i++) runs.push(await bootOnce(b, accel, boot));
      result.boot.push({
        boot,
        qmp: stat(runs.map((r) => r.qmp)),
        start: stat(runs.map((r) => r.start)),
        firstPass: stat(runs.map((r) => r.firstPass)),
      });
    });
  }
  for (const askedMiBps of opts.sections.includes("dirty-rate") ? opts.rates : []) {
    await attempt(`dirty rate ${askedMiBps || "unpaced"}`, async () => {
      const samples = [];
      for (let i = 0; i < opts.reps; i++) {
        samples.push(
          await measureDirtyRate({
            binary: b.path,
            accel,
            dirtyRateMiBps: askedMiBps,
            sampleMs: opts.sampleMs,
          }),
        );
      }
      result.dirtyRates.push({
        askedMiBps,
        mibPerSecond: stat(samples.map((r) => r.mibPerSecond)),
        tscHz: stat(samples.map((r) => r.tscHz)),
        spreadPpm: stat(samples.map((r) => r.calibrationSpreadPpm)),
        rejected: stat(samples.map((r) => r.calibrationRejected)),
      });
    });
  }
  for (const sizeMiB of opts.sections.includes("ram-check") ? opts.sizes : []) {
    for (const path of ["shared-file", "pmemsave"] as const) {
      await attempt(`RAM check ${sizeMiB} MiB via ${path}`, async () => {
        result.ramCheck.push(...(await ramCheckOnRun(b, accel, sizeMiB, path, opts.reps)));
      });
      if (!opts.migration) continue;
      await attempt(`RAM check ${sizeMiB} MiB via ${path} after migration`, async () => {
        result.ramCheck.push(...(await ramCheckAfterMigration(b, accel, sizeMiB, path)));
      });
    }
  }
  return result;
}

function ms(s: Stat): string {
  const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  return s.samples.length > 1 ? `${f(s.median)} ms (${f(s.min)}–${f(s.max)})` : `${f(s.median)} ms`;
}

function render(r: ComboResult): string {
  const lines = [`QEMU ${r.qemu.version} ${r.qemu.arch} (${r.qemu.path}), accel ${r.accel}`];
  if (r.boot.length > 0) lines.push("  boot, from launch (median, min–max):");
  for (const b of r.boot) {
    lines.push(
      `    ${b.boot.padEnd(5)} QMP ready ${ms(b.qmp)} · MIGT:START ${ms(b.start)} · first pass ${ms(b.firstPass)}`,
    );
  }
  if (r.dirtyRates.length > 0) {
    const hz = stat(r.dirtyRates.flatMap((d) => d.tscHz.samples));
    const spread = stat(r.dirtyRates.flatMap((d) => d.spreadPpm.samples));
    const rejected = r.dirtyRates.flatMap((d) => d.rejected.samples).reduce((a, n) => a + n, 0);
    const mhz = (n: number) => (n / 1e6).toFixed(1);
    const clock = bootblockArch(r.qemu.arch).clock;
    const boots = `${mhz(hz.median)} MHz (${mhz(hz.min)}–${mhz(hz.max)} over ${hz.samples.length} boots)`;
    // Only x86 calibrates (the TSC against the PIT); the generic timer states its frequency.
    lines.push(
      r.qemu.arch === "x86_64"
        ? `  ${clock}: ${boots}, rounds within ${(spread.max / 1e4).toFixed(2)}%, ${rejected} late round(s) rejected`
        : `  ${clock}: ${boots}`,
    );
    const band = Math.round(DEFAULT_RATE_TOLERANCE * 100);
    lines.push(`  dirty rate, asked → measured (median, min–max; target ±${band}%):`);
    const f = (n: number) => (n >= 1000 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
    for (const d of r.dirtyRates) {
      const m = d.mibPerSecond;
      const measured = `${f(m.median)} MiB/s (${f(m.min)}–${f(m.max)})`;
      if (d.askedMiBps === 0) {
        const pages = (m.median * MiB) / 4096;
        lines.push(
          `    ${"unpaced".padEnd(10)} → ${measured}, ${(pages / 1e6).toFixed(2)} M pages/s`,
        );
        continue;
      }
      const off = (m.median / d.askedMiBps - 1) * 100;
      const worst = Math.max(m.max / d.askedMiBps - 1, 1 - m.min / d.askedMiBps) * 100;
      const mark = worst <= band ? "✓" : "✗";
      lines.push(
        `    ${`${d.askedMiBps} MiB/s`.padEnd(10)} → ${measured}  ${off >= 0 ? "+" : ""}${off.toFixed(1)}%  ${mark}`,
      );
    }
  }
  if (r.ramCheck.length > 0) lines.push("  RAM check, stop to verdict (median, min–max):");
  for (const f of r.ramCheck) {
    const total = f.phases.total;
    const mark =
      total && f.sizeMiB >= 1024 ? (total.median < TARGET_MS ? "  ✓ <1 s" : "  ✗ ≥1 s") : "";
    const phases = Object.entries(f.phases)
      .map(([name, s]) => `${name} ${ms(s)}`)
      .join(" · ");
    const where = f.after === "run" ? "running guest" : "after migration";
    lines.push(
      `    ${`${f.sizeMiB} MiB`.padEnd(8)} ${f.path.padEnd(11)} ${f.method.padEnd(6)} ${where.padEnd(15)} ${phases}${mark}`,
    );
  }
  for (const e of r.errors) lines.push(`  FAILED ${e}`);
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === "--scenario") return (await import("./bench-scenario.ts")).main(argv.slice(1));
  const { values } = parseFlags("bench", argv, {
    binary: { type: "string", multiple: true },
    accel: { type: "string", multiple: true },
    reps: { type: "string" },
    only: { type: "string" },
    rates: { type: "string" },
    "sample-ms": { type: "string" },
    sizes: { type: "string" },
    "no-migration": { type: "boolean" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const reps = integer("--reps", values.reps) ?? 3;
  if (reps < 1) throw new UsageError("--reps must be at least 1");
  const sizes = (values.sizes ?? "100,1024").split(",").map((s) => {
    const n = integer("--sizes", s.trim());
    if (!n || n > 3000) throw new UsageError(`--sizes takes MiB between 1 and 3000, not "${s}"`);
    return n;
  });
  const sections = (values.only ?? SECTIONS.join(",")).split(",").map((s) => {
    const name = s.trim() as Section;
    if (!SECTIONS.includes(name)) {
      throw new UsageError(`--only takes ${SECTIONS.join(", ")}, not "${s}"`);
    }
    return name;
  });
  const rates = (values.rates ?? "8,32,128,0").split(",").map((s) => {
    const n = Number(s.trim());
    if (!/^\d+(\.\d+)?$/.test(s.trim()) || n > 1024 * 1024) {
      throw new UsageError(`--rates takes MiB/s between 0 and 1048576, not "${s}"`);
    }
    return n;
  });
  const sampleMs = integer("--sample-ms", values["sample-ms"]) ?? 2000;
  if (sampleMs < 100) throw new UsageError("--sample-ms must be at least 100");
  for (const a of values.accel ?? []) {
    if (a !== "tcg" && a !== "kvm") throw new UsageError(`--accel must be tcg or kvm, not "${a}"`);
  }
  const env = { ...process.env };
  if (values.binary) env.QEMU_MIGTEST_BINARIES = values.binary.join(",");
  const binaries = await selectBinariesUnderTest(env);
  const kvm = detectKvm();
  const log = values.json ? (line: string) => console.error(line) : console.error;
  const results: ComboResult[] = [];
  for (const b of binaries) {
    const info = await probeQemuBinary(b.path);
    const wanted = (values.accel as Accel[] | undefined) ?? ["tcg", "kvm"];
    for (const accel of wanted) {
      if (!info.accels.includes(accel)) {
        log(`skip ${b.label} ${b.arch} ${accel}: this QEMU lists only ${info.accels.join(", ")}`);
        continue;
      }
      if (accel === "kvm" && !kvm.usable) {
        log(`skip ${b.label} ${b.arch} kvm: ${kvm.reason}`);
        continue;
      }
      const mismatch = kvmArchMismatch(b.arch, hostQemuArch());
      if (accel === "kvm" && mismatch) {
        log(`skip ${b.label} ${b.arch} kvm: ${mismatch}`);
        continue;
      }
      const label =
        accel === "kvm"
          ? `kvm (${kvm.backend ?? "unknown"}${kvm.hardware ? "" : ", software"})`
          : accel;
      const r = await benchCombo(
        b,
        accel,
        label,
        { reps, sizes, migration: !values["no-migration"], sections, rates, sampleMs },
        log,
      );
      results.push(r);
      if (!values.json) console.log(`${render(r)}\n`);
    }
  }
  if (values.json) {
    console.log(JSON.stringify({ host: { kvm: kvm.reason }, reps, results }, null, 2));
  }
  return results.some((r) => r.errors.length > 0) ? 1 : 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    console.error(error.message);
    process.exitCode = 2;
  } else {
    throw error;
  }
}
