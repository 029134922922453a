// Captures a QEMU binary's `query-qmp-schema` reply as a fixture for harness/qmp-schema.ts,
// and optionally real `query-migrate` replies from a tiny source→destination migration.
//
//   npx tsx scripts/capture-qmp-schema.ts --qemu /usr/bin/qemu-system-x86_64 [--label 7.2]
//       [--out harness/fixtures/qmp-schema] [--migrate]
//
// The schema is written as <label>.json.gz (the SchemaInfo array, gzipped). If that would exceed
// MAX_GZ_BYTES it is trimmed to the entities reachable from MIGRATION_ROOTS (see trimSchema) and the
// fixtures README says so.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { QMPClient } from "../harness/qmp.ts";
import { MIGRATION_ROOTS, type SchemaInfo, trimSchema } from "../harness/qmp-schema.ts";

const MAX_GZ_BYTES = 100 * 1024;

/** QMPClient.connect() is one attempt; QEMU creates its socket a moment after it starts. */
async function connectQmp(path: string, name: string, deadlineMs = 10_000): Promise<QMPClient> {
  const start = Date.now();
  for (;;) {
    const client = new QMPClient({ name });
    try {
      await client.connect(path, { timeoutMs: 5_000 });
      return client;
    } catch (err) {
      await client.disconnect();
      if (Date.now() - start > deadlineMs) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function startQemu(qemu: string, args: string[]): ChildProcess {
  const child = spawn(qemu, args, { stdio: ["ignore", "ignore", "inherit"] });
  child.on("error", (err) => console.error(`failed to start ${qemu}: ${err.message}`));
  return child;
}

async function stopQemu(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  if (child.exitCode === null) child.kill("SIGKILL");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Source and destination on one host over a unix socket; returns what query-migrate said. */
async function captureMigration(qemu: string, dir: string): Promise<Record<string, unknown>> {
  const vm = ["-machine", "pc", "-accel", "tcg", "-m", "64", "-nodefaults", "-display", "none"];
  const src = startQemu(qemu, [...vm, "-qmp", `unix:${dir}/src,server=on,wait=off`]);
  const dst = startQemu(qemu, [
    ...vm,
    "-qmp",
    `unix:${dir}/dst,server=on,wait=off`,
    "-incoming",
    "defer",
  ]);
  const out: Record<string, unknown> = {};
  try {
    const s = await connectQmp(`${dir}/src`, "source");
    const d = await connectQmp(`${dir}/dst`, "destination");
    out["destination-before"] = await d.execute("query-migrate");
    await d.execute("migrate-incoming", { uri: `unix:${dir}/mig` });
    out["destination-listening"] = await d.execute("query-migrate");
    // Slow enough that at least one 'active' sample is seen.
    await s.execute("migrate-set-parameters", { "max-bandwidth": 512 * 1024 });
    await s.execute("migrate", { uri: `unix:${dir}/mig` });
    for (let i = 0; i < 600; i++) {
      const info = (await s.execute("query-migrate")) as { status?: string };
      if (info.status === "active" && !out["source-active"]) out["source-active"] = info;
      if (info.status === "completed" || info.status === "failed") {
        out[`source-${info.status}`] = info;
        break;
      }
      await sleep(50);
    }
    for (let i = 0; i < 100; i++) {
      const info = (await d.execute("query-migrate")) as { status?: string };
      if (info.status === "completed" || info.status === "failed") {
        out[`destination-${info.status}`] = info;
        break;
      }
      await sleep(50);
    }
    await s.disconnect();
    await d.disconnect();
  } finally {
    await stopQemu(src);
    await stopQemu(dst);
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      qemu: { type: "string", default: "/usr/bin/qemu-system-x86_64" },
      label: { type: "string" },
      out: { type: "string", default: "harness/fixtures/qmp-schema" },
      migrate: { type: "boolean", default: false },
    },
  });
  const qemu = values.qemu;
  const dir = await mkdtemp(join(tmpdir(), "qmpschema-"));
  const child = startQemu(qemu, [
    "-machine",
    "none",
    "-nodefaults",
    "-display",
    "none",
    "-qmp",
    `unix:${dir}/s,server=on,wait=off`,
  ]);
  try {
    const qmp = await connectQmp(`${dir}/s`, "schema probe");
    const v = qmp.version.qemu;
    const label = values.label ?? `${v.major}.${v.minor}`;
    const schema = await qmp.execute<SchemaInfo[]>("query-qmp-schema");
    await qmp.disconnect();
    await stopQemu(child);

    await mkdir(values.out, { recursive: true });
    const fullJson = JSON.stringify(schema);
    let gz = gzipSync(fullJson, { level: 9 });
    let note = `full schema, ${schema.length} entities`;
    if (gz.length > MAX_GZ_BYTES) {
      const trimmed = trimSchema(schema, MIGRATION_ROOTS);
      gz = gzipSync(JSON.stringify(trimmed), { level: 9 });
      note = `trimmed to ${trimmed.length} of ${schema.length} entities`;
    }
    const file = join(values.out, `${label}.json.gz`);
    await writeFile(file, gz);
    console.log(
      `${file}: QEMU ${v.major}.${v.minor}.${v.micro}, ${note}, ${fullJson.length} bytes raw, ${gz.length} gzipped`,
    );

    if (values.migrate) {
      const replies = await captureMigration(qemu, dir);
      const mfile = join(values.out, `query-migrate-${label}.json`);
      await writeFile(
        mfile,
        `${JSON.stringify({ qemu: `${v.major}.${v.minor}.${v.micro}`, replies }, null, 2)}\n`,
      );
      console.log(`${mfile}: ${Object.keys(replies).join(", ")}`);
    }
  } finally {
    await stopQemu(child);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
