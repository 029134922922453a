// Migration over descriptors the harness opened itself, as libvirt does: the migration file is
// opened here, inherited by each QEMU at launch as fd 3 and registered with `-add-fd` in fdset 1;
// the source writes `file:/dev/fdset/1` (or through exec), the destination reads `/dev/fdset/1`
// or `fd:4`: one end of a socket pair it inherited, the harness streaming the file into the
// other once the source completed, as libvirt's iohelper does on restore. query-fdsets shows
// what each QEMU holds and remove-fd takes it away.
// Not covered: `getfd` and QMP `add-fd`, which take the descriptor as SCM_RIGHTS ancillary data
// on the QMP socket; Node's `net` cannot send it (see harness/transport/fdset-transport.ts).

import { expect } from "vitest";
import type { MigrationPair, Side } from "../harness/migration/pair.ts";
import {
  declareSwitchoverBandwidth,
  missingTransport,
} from "../harness/migration/transport-support.ts";
import { ExecuteError } from "../harness/qmp/errors.ts";
import { FDSET_OPAQUE } from "../harness/transport/fdset-transport.ts";
import { FDSET, type Transport } from "../harness/transport/transport.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 64;
const full = { tags: ["full"] };

interface FdsetInfo {
  "fdset-id": number;
  fds: { fd: number; opaque?: string }[];
}

const queryFdsets = (pair: MigrationPair, side: Side) =>
  pair.execute<FdsetInfo[]>(side, "query-fdsets");

/**
 * Each QEMU holds one descriptor in fdset 1, with the opaque it was given at launch: its own dup
 * of the inherited fd 3 (-add-fd duplicates it), whose number it reports.
 */
async function fdsetDescriptor(pair: MigrationPair, side: Side): Promise<number> {
  const sets = await queryFdsets(pair, side);
  const set = sets.find((s) => s["fdset-id"] === FDSET.id);
  expect(set, `${side} query-fdsets: ${JSON.stringify(sets)}`).toBeDefined();
  expect(set?.fds.length, `${side} fdset ${FDSET.id}: ${JSON.stringify(set)}`).toBe(1);
  expect(set?.fds[0]?.opaque, `${side} fdset ${FDSET.id} opaque`).toBe(FDSET_OPAQUE[side]);
  return set?.fds[0]?.fd ?? -1;
}

async function expectLaunchFdsets(pair: MigrationPair): Promise<void> {
  for (const side of ["source", "destination"] as const) await fdsetDescriptor(pair, side);
  await declareSwitchoverBandwidth(pair);
}

/**
 * remove-fd of what each side holds is accepted, and of a descriptor the set never had refused
 * as not found. QEMU may go on listing a removed descriptor until it closes it (7.2 lists it, and
 * accepts remove-fd of it again), so query-fdsets is only required not to grow.
 */
async function expectRemoveFd(pair: MigrationPair): Promise<void> {
  for (const side of ["source", "destination"] as const) {
    const fd = await fdsetDescriptor(pair, side);
    await pair.execute(side, "remove-fd", { "fdset-id": FDSET.id, fd });
    const never = 999;
    const refused = await pair.execute(side, "remove-fd", { "fdset-id": FDSET.id, fd: never }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused, `${side}: remove-fd of fd ${never}, never added`).toBeInstanceOf(ExecuteError);
    expect((refused as ExecuteError).desc).toBe(
      `File descriptor named 'fdset-id:${FDSET.id}, fd:${never}' not found`,
    );
    const sets = await queryFdsets(pair, side);
    expect(
      sets.flatMap((s) => s.fds).length,
      `${side} query-fdsets after remove-fd: ${JSON.stringify(sets)}`,
    ).toBeLessThanOrEqual(1);
  }
}

forEachQemu("fd and fdsets", (b) => {
  test(`fd:4 in from an inherited descriptor, written by exec on the source, query-fdsets, remove-fd ${where(b)}`, async ({
    scenario,
  }) => {
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      transport: { kind: "fdset", incoming: "fd", outgoing: "exec" },
      live: false,
      hooks: { beforeMigrate: expectLaunchFdsets, afterMigrate: expectRemoveFd },
    });
    expectCompletedMigration(pair, result, MEMORY_MIB);
  });

  test(
    `file:/dev/fdset out, fd:4 in: descriptors inherited at launch, query-fdsets, remove-fd ${where(b)}`,
    full,
    async ({ scenario }) => {
      const transport: Transport = { kind: "fdset", incoming: "fd" };
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        transport,
        live: false,
        skipIf: (p) => missingTransport(p, transport),
        hooks: { beforeMigrate: expectLaunchFdsets, afterMigrate: expectRemoveFd },
      });
      expect(result.uri).toBe(`file:/dev/fdset/${FDSET.id}`);
      expectCompletedMigration(pair, result, MEMORY_MIB);
    },
  );

  test(
    `/dev/fdset both ways with mapped-ram and multifd, live ${where(b)}`,
    full,
    async ({ scenario }) => {
      const transport: Transport = { kind: "fdset", incoming: "fdset" };
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        transport,
        capabilities: { both: { "mapped-ram": true, multifd: true } },
        parameters: { both: { "multifd-channels": 2 } },
        skipIf: (p) => missingTransport(p, transport),
        hooks: { beforeMigrate: expectLaunchFdsets },
      });
      expectCompletedMigration(pair, result, MEMORY_MIB);
    },
  );
});
