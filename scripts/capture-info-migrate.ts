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
// Three pairs per binary:
//  1. none (both sides), listening (destination), active (both; the source held active by
//     NON_CONVERGING_PARAMETERS until dirty-sync-count >= 2), completed (both; released with
//     CONVERGING_PARAMETERS);
//  2. cancelled: migrate_cancel on the active source; the destination's failed state too when
//     its migrate-incoming takes exit-on-error=false (otherwise it exits);
//  3. failed: the source migrates to a loopback port nobody listens on.
// HMP text is only kept when the query-migrate replies read just before it, just after it and
// after `-a` describe the same state (identical; while active: same status and dirty sync).

import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  fixtureFileName,
  type InfoMigrateFixture,
  type InfoMigratePhase,
  serializeFixture,
} from "../harness/checks/info-migrate-fixture.ts";
import {
  CONVERGING_PARAMETERS,
  NON_CONVERGING_PARAMETERS,
} from "../harness/migration/convergence.ts";
import { freeLoopbackPort, MigrationPair, type PairOptions } from "../harness/migration/pair.ts";
import type { Side } from "../harness/migration/timeline.ts";
import type { AccelRequest } from "../harness/qemu/accel.ts";
import type { MigrationInfo } from "../harness/qmp/qapi.ts";

const SETTLE_TIMEOUT_MS = 30_000;
const MIGRATION_TIMEOUT_MS = 120_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dirtySyncs = (info: MigrationInfo) => info.ram?.["dirty-sync-count"] ?? 0;

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
        this.fixtures.push(fixture);
        console.log(
          `  ${fixtureFileName(fixture)}: status ${fixture.qmp.status ?? "(none)"}${all ? "" : ", no -a"}`,
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

  /** Pair 1: none, listening, active, completed. */
  async mainFlow(): Promise<void> {
    const pair = await this.launch({ source: { parameters: NON_CONVERGING_PARAMETERS } });
    try {
      await pair.waitForGuest();
      await this.take(pair, "source", "none", (i) => i.status === undefined);
      await this.take(pair, "destination", "none", (i) => i.status === undefined);
      const uri = await pair.startIncoming();
      await this.take(pair, "destination", "listening", (i) => i.status !== "active");
      await pair.startMigration(uri);
      const held = (i: MigrationInfo) => i.status === "active" && dirtySyncs(i) >= 2;
      await pair.waitUntil(
        "source active with dirty-sync-count >= 2, destination active",
        (s) => held(s.source.migration) && s.destination.migration.status === "active",
        { timeoutMs: MIGRATION_TIMEOUT_MS },
      );
      await this.take(pair, "source", "active", held);
      await this.take(pair, "destination", "active", (i) => i.status === "active");
      await pair.setParameters("source", CONVERGING_PARAMETERS);
      await pair.waitForStatus(
        { source: ["completed"], destination: ["completed"] },
        { timeoutMs: MIGRATION_TIMEOUT_MS },
      );
      await this.take(pair, "source", "completed", (i) => i.status === "completed");
      await this.take(pair, "destination", "completed", (i) => i.status === "completed");
    } finally {
      await pair.close();
    }
  }

  /** Pair 2: migrate_cancel while active; the destination's side only if it survives it. */
  async cancelFlow(): Promise<void> {
    const pair = await this.launch({ source: { parameters: NON_CONVERGING_PARAMETERS } });
    try {
      await pair.waitForGuest();
      const survives = pair.features("destination").migrateIncomingHasExitOnError;
      let uri: string;
      if (survives) {
        uri = `tcp:127.0.0.1:${await freeLoopbackPort()}`;
        const args = { uri, "exit-on-error": false };
        pair.timeline.record("destination", "command", {
          command: "migrate-incoming",
          arguments: args,
        });
        await pair.destination.qmp.execute("migrate-incoming", args);
      } else {
        uri = await pair.startIncoming();
      }
      await pair.startMigration(uri);
      await pair.waitForStatus(
        { source: ["active"], destination: ["active"] },
        { timeoutMs: MIGRATION_TIMEOUT_MS },
      );
      pair.timeline.record("source", "command", { command: "migrate_cancel" });
      await pair.source.qmp.execute("migrate_cancel");
      await this.take(pair, "source", "cancelled", (i) => i.status === "cancelled");
      if (survives) {
        await this.take(pair, "destination", "cancelled", (i) => i.status === "failed");
      } else {
        console.log(
          "  destination cancelled: not captured (migrate-incoming has no exit-on-error: the destination exits)",
        );
      }
    } finally {
      await pair.close();
    }
  }

  /** Pair 3: a migration to a port nobody listens on. */
  async failFlow(): Promise<void> {
    const pair = await this.launch();
    try {
      await pair.migrateExpectingFailure(`tcp:127.0.0.1:${await freeLoopbackPort()}`);
      await this.take(pair, "source", "failed", (i) => i.status === "failed");
    } finally {
      await pair.close();
    }
  }
}

/** Write one binary's fixtures, then drop that version's files this capture did not produce. */
async function writeFixtures(out: string, fixtures: InfoMigrateFixture[]): Promise<void> {
  await mkdir(out, { recursive: true });
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
    await writeFixtures(values.out, capture.fixtures);
  }
  return 0;
}

process.exitCode = await main();
