// Whether both QEMUs of a pair can carry a transport, asked of their schemas (never of a version
// number): the answer is a skip reason naming what the schema lacks, or undefined.

import type { Transport } from "../transport/transport.ts";
import type { MigrationPair } from "./pair.ts";
import type { Side } from "./timeline.ts";

const SIDES = ["source", "destination"] as const;

/** The values of MigrationAddress's `transport` discriminator, via `migrate`'s `channels`. */
export function migrationAddressTransports(pair: MigrationPair, side: Side): string[] {
  const schema = pair.schema(side);
  const command = side === "source" ? "migrate" : "migrate-incoming";
  const type = schema.memberPath(schema.typeOf(command, "arg"), ["channels", "addr", "transport"]);
  return type ? schema.enumValues(type) : [];
}

function lacking(pair: MigrationPair, side: Side, what: string): string {
  return `QEMU ${pair.machine(side).binary.version} (${side}) ${what}`;
}

/** Why this pair cannot carry `t`, from its schemas; undefined when both sides can. */
export function missingTransport(pair: MigrationPair, t: Transport): string | undefined {
  const needsFile =
    t.kind === "file" || t.kind === "fdset" || (t.kind === "channels" && t.address === "file");
  for (const side of SIDES) {
    const command = side === "source" ? "migrate" : "migrate-incoming";
    const transports = migrationAddressTransports(pair, side);
    if (t.kind === "channels" && transports.length === 0) {
      return lacking(pair, side, `has no "channels" argument on ${command} (query-qmp-schema)`);
    }
    if (needsFile && !transports.includes("file")) {
      return lacking(
        pair,
        side,
        transports.length === 0
          ? `declares no file migration: ${command} has no "channels" argument, so no MigrationAddress transport "file" (query-qmp-schema)`
          : `declares no file migration: MigrationAddress transports are ${transports.join(", ")} (query-qmp-schema)`,
      );
    }
  }
  return undefined;
}

/**
 * Tell the source its switchover bandwidth, where it has `avail-switchover-bandwidth`. When its
 * own estimate is 0 (mbps 0: a file written faster than it measures, a short unix migration),
 * QEMU 11.1 reported expected-downtime 9223372036854775807 (INT64_MAX: dirty bytes / 0,
 * saturated), which the reply validator refuses as beyond 2^53; given the bandwidth, QEMU divides
 * by it instead. Without the parameter nothing is set.
 */
export async function declareSwitchoverBandwidth(pair: MigrationPair): Promise<void> {
  const name = "avail-switchover-bandwidth";
  if (!(name in (await pair.queryParameters("source")))) return;
  await pair.setParameters("source", { [name]: 1024 * 1024 * 1024 });
}
