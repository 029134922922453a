// Captures the info-migrate fixtures (harness/checks/info-migrate-fixture.ts) from a real QEMU through
// the harness itself: a MigrationPair running the dirtying boot-block guest, each side's
// query-migrate and HMP `info migrate` (and `info migrate -a` where HMP takes it) at every phase.
//
//   npx tsx scripts/capture-info-migrate.ts --binary <spec> [--binary <spec>...]
//       [--out harness/fixtures/info-migrate] [--accel auto|kvm|tcg]
//
// <spec> is a matrix name (7.2, 10.0, 11.1), a path or a command name. Files are written as
// <qemu-version>-<side>-<phase>.json once every phase of that binary was captured; that
// version's files from an earlier capture that this one no longer produces are removed.
//
// Three pairs per binary, then one per feature family (multifd, xbzrle, auto-converge: active
// once the family's figures show, and completed) written to <out>/families/ as
// <qemu-version>-<family>-<side>-<phase>.json, where the QEMU has the capability:
//  1. none (both sides), listening (destination), active (both; the source held active by
//     holdParameters until dirty-sync-count >= 2), completed (both; released with
//     CONVERGING_PARAMETERS);
//  2. cancelled: migrate_cancel on the active source; the destination's failed state too when
//     its migrate-incoming takes exit-on-error=false (otherwise it exits);
//  3. failed: the source migrates to a loopback port nobody listens on.
// HMP text is only kept when the query-migrate replies read just before it, just after it and
// after `-a` describe the same state (identical; while active: same status and dirty sync).

import { readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  fixtureFileName,
  type InfoMigrateFixture,
  type InfoMigratePhase,
  serializeFixture,
} from "../harness/checks/info-migrate-fixture.ts";
import { MigrationPair, type PairOptions } from "../harness/migration/pair.ts";
import type { Side } from "../harness/migration/timeline.ts";
import type { AccelRequest } from "../harness/qemu/accel.ts";
import type { MigrationInfo } from "../harness/qmp/qapi.ts";
import { runScenario } from "../harness/scenario/run.ts";
import { type Scenario, ScenarioUnsupported } from "../harness/scenario/scenario.ts";
import { makeDir } from "../harness/util/make-dir.ts";

const SETTLE_TIMEOUT_MS = 30_000;
const MIGRATION_TIMEOUT_MS = 120_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dirtySyncs = (info: MigrationInfo) => info.ram?.["dirty-sync-count"] ?? 0;

type Ready = (info: MigrationInfo) => boolean;

/** Whether two query-migrate replies describe the state an HMP text printed between them. */
function sameState(a: MigrationInfo, b: MigrationInfo, live: boolean): boolean {
  if (!live) return JSON.stringify(a) === JSON.stringify(b);
  return a.status === b.status && dirtySyncs(a) === dirtySyncs(b);
}

/** HMP's own help says whether `info migrate` takes `-a` (10.1+). */
async function hmpTakesAll(pair: MigrationPair, side: Side): Promise<boolean> {
  const help = await pair.machine(side).hmp("help info");
  return /^info migrate \[-a\]/m.test(help);
}

class Capture {
  readonly fixtures: InfoMigrateFixture[] = [];
  /** Per feature family (multifd, xbzrle, ...): written to <out>/families/. */
  readonly familyFixtures: { family: string; fixture: InfoMigrateFixture }[] = [];
  /** The family the pair being captured belongs to; undefined for the plain flows. */
  private family?: string;
  private readonly takesAll = new Map<MigrationPair, Record<Side, boolean>>();

  constructor(
    readonly spec: string,
    readonly accel: AccelRequest,
  ) {}

  async launch(options: PairOptions = {}): Promise<MigrationPair> {
    const pair = await MigrationPair.launch({ binary: this.spec, accel: this.accel, ...options });
    this.takesAll.set(pair, {
      source: await hmpTakesAll(pair, "source"),
      destination: await hmpTakesAll(pair, "destination"),
    });
    return pair;
  }

  /**
   * Snapshot one side until the state is settled and `ready` holds, then keep it as a fixture.
   * The harness's snapshot brackets `info migrate` with two query-migrate reads; one more read
   * follows `info migrate -a`, so all three texts and the kept reply show one state.
   */
  async take(
    pair: MigrationPair,
    side: Side,
    phase: InfoMigratePhase,
    ready: (info: MigrationInfo) => boolean,
  ): Promise<void> {
    const m = pair.machine(side);
    const live = phase === "active";
    const all = this.takesAll.get(pair)?.[side] ?? false;
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const snap = await pair.snapshot(side);
      const bracket = pair.timeline.hmpBrackets(side).at(-1);
      const hmpAll = all ? await m.hmp("info migrate -a") : undefined;
      if (hmpAll !== undefined) pair.timeline.record(side, "info-migrate", hmpAll);
      const last = await m.qmp.execute<MigrationInfo>("query-migrate");
      pair.timeline.record(side, "query-migrate", last);
      if (hmpAll !== undefined && /^Try "help/m.test(hmpAll)) {
        throw new Error(`${side} ${phase}: HMP refused "info migrate -a": ${hmpAll.trim()}`);
      }
      // An event between the reads breaks the bracket: then this round does not count.
      const settled =
        bracket !== undefined &&
        bracket.after === snap.migration &&
        sameState(bracket.before, bracket.after, live) &&
        sameState(bracket.after, last, live);
      if (settled && ready(bracket.before)) {
        const fixture: InfoMigrateFixture = {
          qemu: m.binary.version,
          side,
          phase,
          qmp: bracket.before,
          hmp: bracket.text,
          ...(hmpAll === undefined ? {} : { hmpAll }),
        };
        if (this.family) this.familyFixtures.push({ family: this.family, fixture });
        else this.fixtures.push(fixture);
        console.log(
          `  ${this.family ? `families/${familyFileName(this.family, fixture)}` : fixtureFileName(fixture)}: status ${fixture.qmp.status ?? "(none)"}${all ? "" : ", no -a"}`,
        );
        return;
      }
      if (Date.now() > deadline) {
        throw await pair.fail(
          `capturing ${side} ${phase}: no settled state that fits within ${SETTLE_TIMEOUT_MS} ms; last query-migrate: ${JSON.stringify(last)}`,
          side,
        );
      }
      await sleep(100);
    }
  }

  /** Run a scenario on this capture's binary, on a pair this capture knows. */
  private run(scenario: Scenario): Promise<unknown> {
    return runScenario(
      { timeoutMs: MIGRATION_TIMEOUT_MS, ...scenario },
      { binary: this.spec, accel: this.accel },
      async (o) => {
        this.current = await this.launch(o);
        return this.current;
      },
    ).finally(() => this.current?.close());
  }

  private current?: MigrationPair;

  /** Pair 1: none, listening, active (held until dirty-sync-count >= 2), completed. */
  async mainFlow(): Promise<void> {
    const both = async (p: MigrationPair, phase: InfoMigratePhase, ready: Ready) => {
      await this.take(p, "source", phase, ready);
      await this.take(p, "destination", phase, ready);
    };
    await this.run({
      hold: { passes: 2 },
      hooks: {
        beforeMigrate: (p) => both(p, "none", (i) => i.status === undefined),
        afterIncoming: (p) =>
          this.take(p, "destination", "listening", (i) => i.status !== "active"),
        whileHeld: async (p) => {
          await this.take(
            p,
            "source",
            "active",
            (i) => i.status === "active" && dirtySyncs(i) >= 2,
          );
          await this.take(p, "destination", "active", (i) => i.status === "active");
        },
        afterMigrate: (p) => both(p, "completed", (i) => i.status === "completed"),
      },
    });
  }

  /** Pair 2: migrate_cancel while active; the destination's side only if it survives it. */
  async cancelFlow(): Promise<void> {
    const survives = (p: MigrationPair) => p.features("destination").migrateIncomingHasExitOnError;
    await this.run({
      hold: { passes: 1 },
      expect: { status: "cancelled" },
      incoming: (p) => (survives(p) ? { exitOnError: false } : {}),
      hooks: {
        beforeMigrate: (p) => {
          // Without exit-on-error the destination ends when the stream breaks.
          if (!survives(p)) p.expectExit("destination", { exitCode: 1 });
        },
        whileHeld: async (p) => {
          await p.waitForStatuses({ source: ["active"], destination: ["active"] });
          await p.cancel();
        },
        afterMigrate: async (p) => {
          await this.take(p, "source", "cancelled", (i) => i.status === "cancelled");
          if (survives(p)) {
            await this.take(p, "destination", "cancelled", (i) => i.status === "failed");
          } else {
            console.log(
              "  destination cancelled: not captured (migrate-incoming has no exit-on-error: the destination exits)",
            );
          }
        },
      },
    });
  }

  /** The feature families, one pair each: both sides active (when ready) and completed. */
  async familyFlows(): Promise<void> {
    for (const f of FAMILIES) {
      this.family = f.family;
      try {
        await this.run({
          ...f.scenario,
          capabilities: { both: f.capabilities },
          skipIf: (p) =>
            Object.keys(f.capabilities).every((c) => p.features("source").capabilities.includes(c))
              ? undefined
              : `no ${Object.keys(f.capabilities).join(", ")}`,
          hooks: {
            whileHeld: async (p) => {
              await p.waitUntil(
                `${f.family} ready to capture`,
                (s) => f.activeReady(s.source.migration),
                {
                  timeoutMs: SETTLE_TIMEOUT_MS,
                },
              );
              await this.take(
                p,
                "source",
                "active",
                (i) => i.status === "active" && f.activeReady(i),
              );
              await this.take(p, "destination", "active", (i) => i.status === "active");
            },
            afterMigrate: async (p) => {
              await this.take(p, "source", "completed", (i) => i.status === "completed");
              await this.take(p, "destination", "completed", (i) => i.status === "completed");
            },
          },
        });
      } catch (error) {
        if (!(error instanceof ScenarioUnsupported)) throw error;
        console.log(`  ${f.family}: skipped (${error.message})`);
      } finally {
        this.family = undefined;
      }
    }
  }

  /** Pair 3: a migration to a port nobody listens on. */
  async failFlow(): Promise<void> {
    await this.run({
      transport: { kind: "tcp-nobody-listening" },
      expect: { status: "failed" },
      hooks: {
        afterMigrate: (p) => this.take(p, "source", "failed", (i) => i.status === "failed"),
      },
    });
  }
}

/**
 * The feature families' pairs: each one's `info migrate` (and `-a`) while active and once
 * completed, where this QEMU has the capabilities. A family the QEMU lacks is skipped, saying so.
 */
const FAMILIES: {
  family: string;
  capabilities: Record<string, boolean>;
  scenario: Scenario;
  /** Ready to keep the active snapshot (e.g. xbzrle pages sent, throttle on). */
  activeReady: Ready;
}[] = [
  {
    family: "multifd",
    capabilities: { multifd: true },
    scenario: {
      memoryMiB: 48,
      guest: { kind: "bootblock", rangeEndMiB: 32, dirtyRateMiBps: 64 },
      parameters: { both: { "multifd-channels": 4 } },
      hold: { passes: 2 },
    },
    activeReady: (i) => (i.ram?.["multifd-bytes"] ?? 0) > 0,
  },
  {
    family: "xbzrle",
    capabilities: { xbzrle: true },
    // Deltas start on the third pass and soon converge: active shows the cache (pages may
    // still be 0), completed its pages.
    scenario: {
      memoryMiB: 48,
      guest: { kind: "bootblock", rangeEndMiB: 32, dirtyRateMiBps: 64 },
      hold: { passes: 2 },
    },
    activeReady: (i) => i["xbzrle-cache"] !== undefined,
  },
  {
    family: "auto-converge",
    capabilities: { "auto-converge": true },
    // Unpaced, throttled to at most 60%: still far above 128 MiB/s, so held while throttled.
    scenario: {
      memoryMiB: 48,
      guest: { kind: "bootblock", rangeEndMiB: 32, dirtyRateMiBps: 0 },
      parameters: {
        source: {
          "cpu-throttle-initial": 50,
          "cpu-throttle-increment": 10,
          "max-cpu-throttle": 60,
        },
      },
      hold: { passes: 2, parameters: { "max-bandwidth": 128 * 1024 * 1024, "downtime-limit": 1 } },
    },
    activeReady: (i) => i["cpu-throttle-percentage"] !== undefined,
  },
];

export function familyFileName(family: string, f: InfoMigrateFixture): string {
  return `${f.qemu}-${family}-${f.side}-${f.phase}.json`;
}

/** Write one binary's fixtures, then drop that version's files this capture did not produce. */
async function writeFixtures(out: string, fixtures: InfoMigrateFixture[]): Promise<void> {
  await makeDir(out);
  const written = new Set<string>();
  for (const f of fixtures) {
    const name = fixtureFileName(f);
    await writeFile(join(out, name), serializeFixture(f));
    written.add(name);
  }
  const versions = new Set(fixtures.map((f) => f.qemu));
  for (const name of await readdir(out)) {
    const version = name.split("-")[0] ?? "";
    if (versions.has(version) && name.endsWith(".json") && !written.has(name)) {
      await rm(join(out, name));
      console.log(`  removed ${name}: not produced by this capture`);
    }
  }
}

/** Write one binary's family fixtures, dropping that version's files this capture did not make. */
async function writeFamilyFixtures(
  out: string,
  fixtures: { family: string; fixture: InfoMigrateFixture }[],
): Promise<void> {
  await makeDir(out);
  const written = new Set<string>();
  for (const { family, fixture } of fixtures) {
    const name = familyFileName(family, fixture);
    await writeFile(join(out, name), serializeFixture(fixture));
    written.add(name);
  }
  const versions = new Set(fixtures.map((f) => f.fixture.qemu));
  for (const name of await readdir(out)) {
    const version = name.split("-")[0] ?? "";
    if (versions.has(version) && name.endsWith(".json") && !written.has(name)) {
      await rm(join(out, name));
      console.log(`  removed families/${name}: not produced by this capture`);
    }
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      binary: { type: "string", multiple: true },
      out: { type: "string", default: "harness/fixtures/info-migrate" },
      accel: { type: "string", default: "auto" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const specs = values.binary ?? [];
  if (values.help || specs.length === 0) {
    console.error(
      "usage: npx tsx scripts/capture-info-migrate.ts --binary <7.2|10.0|11.1|path|command> [--binary ...] [--out dir] [--accel auto|kvm|tcg]",
    );
    return values.help ? 0 : 2;
  }
  const accel = values.accel;
  if (accel !== "auto" && accel !== "kvm" && accel !== "tcg") {
    console.error(`--accel must be auto, kvm or tcg, not "${accel}"`);
    return 2;
  }
  for (const spec of specs) {
    console.log(`${spec}:`);
    const capture = new Capture(spec, accel);
    await capture.mainFlow();
    await capture.cancelFlow();
    await capture.failFlow();
    await capture.familyFlows();
    await writeFixtures(values.out, capture.fixtures);
    await writeFamilyFixtures(join(values.out, "families"), capture.familyFixtures);
  }
  return 0;
}

process.exitCode = await main();
