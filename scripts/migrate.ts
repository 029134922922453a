// The main job: one real precopy migration between two fresh QEMUs on this machine, printing
// what both sides reported (QMP query-migrate and HMP info migrate) at the end.
// Usage: npx tsx scripts/migrate.ts [--binary PATH] [--accel auto|kvm|tcg] [--transport tcp|unix]
//        [--max-bandwidth BYTES] [--hold-ms MS]

import { parseArgs } from "node:util";
import type { AccelRequest } from "../harness/accel.ts";
import { MigrationPair, type Transport } from "../harness/migration.ts";

const { values } = parseArgs({
  options: {
    binary: { type: "string" },
    accel: { type: "string", default: "auto" },
    transport: { type: "string", default: "tcp" },
    "max-bandwidth": { type: "string" },
    "memory-mib": { type: "string", default: "128" },
    help: { type: "boolean", short: "h" },
  },
});

if (values.help) {
  console.log(
    "usage: scripts/migrate.ts [--binary PATH] [--accel auto|kvm|tcg] [--transport tcp|unix] [--max-bandwidth BYTES] [--memory-mib N]",
  );
  process.exit(0);
}
const accel = values.accel as AccelRequest;
if (!["auto", "kvm", "tcg"].includes(accel)) {
  console.error(`--accel must be auto, kvm or tcg, not "${values.accel}"`);
  process.exit(2);
}
const transport = values.transport as Transport;
if (!["tcp", "unix"].includes(transport)) {
  console.error(`--transport must be tcp or unix, not "${values.transport}"`);
  process.exit(2);
}

let lastStatus = "";
const pair = await MigrationPair.launch({
  onSnapshot: (side, snap) => {
    const status = snap.migration.status ?? "none";
    if (side === "source" && status !== lastStatus) {
      lastStatus = status;
      console.log(`source migration status: ${status}`);
    }
  },
  binary: values.binary,
  accel,
  transport,
  memoryMiB: Number(values["memory-mib"]),
  source: values["max-bandwidth"]
    ? { parameters: { "max-bandwidth": Number(values["max-bandwidth"]) } }
    : undefined,
});
try {
  for (const side of ["source", "destination"] as const) {
    const m = pair.machine(side);
    console.log(
      `${side}: QEMU ${m.binary.version} pid ${m.pid} accel ${m.accel.accel} (${m.accel.reason}) dir ${m.dir}`,
    );
  }
  const result = await pair.migrate();
  console.log(`migration over ${result.uri} completed in ${result.durationMs} ms`);
  for (const side of ["source", "destination"] as const) {
    const r = result[side];
    console.log(`\n=== ${side}: VM ${r.vm.status}; MIGRATION events: ${r.events.join(" -> ")}`);
    console.log("query-migrate:", JSON.stringify(r.migration, null, 2));
    console.log(`info migrate:\n${r.infoMigrate}`);
  }
} finally {
  await pair.close();
}
