// Captures a QEMU binary's `query-qmp-schema` reply as a fixture for harness/qmp/schema.ts,
// and optionally real `query-migrate` replies from a tiny source→destination migration.
//
//   npx tsx scripts/capture-qmp-schema.ts --qemu 11.1|/path/to/qemu-system-x86_64 [--label 11.1]
//       [--out harness/fixtures/qmp-schema] [--migrate]
//
// The schema is written as <label>.json.gz (the SchemaInfo array, gzipped). If that would exceed
// MAX_GZ_BYTES it is trimmed to the entities reachable from MIGRATION_ROOTS (see trimSchema) and the
// fixtures README says so.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { MigrationPair } from "../harness/migration/pair.ts";
import { Machine } from "../harness/qemu/machine.ts";
import { MIGRATION_ROOTS, trimSchema } from "../harness/qmp/schema-trim.ts";
import { makeDir } from "../harness/util/make-dir.ts";
import { KiB } from "../harness/util/units.ts";

const MAX_GZ_BYTES = 100 * KiB;

/** An idle guest migrated over a unix socket, slowly; what query-migrate said on each side. */
async function captureMigration(qemu: string): Promise<Record<string, unknown>> {
  const pair = await MigrationPair.launch({
    binary: qemu,
    accel: "tcg",
    memoryMiB: 64,
    guest: { kind: "none" },
    transport: "unix",
    // Slow enough that at least one 'active' sample is seen.
    source: { parameters: { "max-bandwidth": 512 * KiB } },
  });
  const out: Record<string, unknown> = {};
  try {
    out["destination-before"] = (await pair.snapshot("destination")).migration;
    await pair.startIncoming();
    out["destination-listening"] = (await pair.snapshot("destination")).migration;
    await pair.startMigration();
    const active = await pair.waitForStatuses({ source: ["active"] }, { timeoutMs: 30_000 });
    out["source-active"] = active.source.migration;
    const done = await pair.waitForStatuses(
      { source: ["completed"], destination: ["completed"] },
      { timeoutMs: 60_000 },
    );
    out["source-completed"] = done.source.migration;
    out["destination-completed"] = done.destination.migration;
  } finally {
    await pair.close();
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      qemu: { type: "string", default: "qemu-system-x86_64" },
      label: { type: "string" },
      out: { type: "string", default: "harness/fixtures/qmp-schema" },
      migrate: { type: "boolean", default: false },
    },
  });
  const qemu = values.qemu;
  const m = await Machine.launch({
    name: "schema",
    binary: qemu,
    accel: "tcg",
    machineType: "none",
  });
  let schema: Awaited<ReturnType<Machine["schema"]>>;
  try {
    schema = await m.schema();
  } finally {
    await m.shutdown();
  }
  const { major, minor, micro } = m.binary;
  const label = values.label ?? `${major}.${minor}`;
  await makeDir(values.out);
  const fullJson = JSON.stringify(schema.info);
  let gz = gzipSync(fullJson, { level: 9 });
  let note = `full schema, ${schema.info.length} entities`;
  if (gz.length > MAX_GZ_BYTES) {
    const trimmed = trimSchema(schema.info, MIGRATION_ROOTS);
    gz = gzipSync(JSON.stringify(trimmed), { level: 9 });
    note = `trimmed to ${trimmed.length} of ${schema.info.length} entities`;
  }
  const file = join(values.out, `${label}.json.gz`);
  await writeFile(file, gz);
  console.log(
    `${file}: QEMU ${m.binary.version}, ${note}, ${fullJson.length} bytes raw, ${gz.length} gzipped`,
  );

  if (values.migrate) {
    const replies = await captureMigration(qemu);
    const mfile = join(values.out, `query-migrate-${label}.json`);
    await writeFile(
      mfile,
      `${JSON.stringify({ qemu: `${major}.${minor}.${micro}`, replies }, null, 2)}\n`,
    );
    console.log(`${mfile}: ${Object.keys(replies).join(", ")}`);
  }
}

await main();
