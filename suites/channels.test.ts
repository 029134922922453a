// The `channels` argument of migrate and migrate-incoming (declared in the schema from QEMU 9.0):
// a MigrationChannel list instead of a URI, over a tcp socket, a unix socket and a file; and the
// two malformed commands QEMU must refuse, both `uri` and `channels`, or neither.

import { expect } from "vitest";
import {
  declareSwitchoverBandwidth,
  missingTransport,
} from "../harness/migration/transport-support.ts";
import type { Transport } from "../harness/transport/transport.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 64;
const full = { tags: ["full"] };
const EITHER = "need either 'uri' or 'channels' argument";

/** What each side was sent: channels, and no uri. */
function sentArguments(pair: import("../harness/migration/pair.ts").MigrationPair) {
  const find = (side: "source" | "destination", command: string) =>
    pair.timeline.of(side, "command").find((c) => c.data.command === command)?.data.arguments;
  return { migrate: find("source", "migrate"), incoming: find("destination", "migrate-incoming") };
}

forEachQemu("channels", (b) => {
  for (const address of ["tcp", "unix", "file"] as const) {
    test(
      `migrate and migrate-incoming with channels over ${address === "file" ? "a file" : `a ${address} socket`} ${where(b)}`,
      address === "tcp" ? {} : full,
      async ({ scenario }) => {
        const transport: Transport = { kind: "channels", address };
        const { pair, result } = await scenario({
          memoryMiB: MEMORY_MIB,
          transport,
          ...(address === "file" ? { live: false } : {}),
          skipIf: (p) => missingTransport(p, transport),
          // 11.1 reports expected-downtime INT64_MAX on a 0 bandwidth estimate (see the helper).
          hooks: { beforeMigrate: declareSwitchoverBandwidth },
        });
        expectCompletedMigration(pair, result, MEMORY_MIB);
        const sent = sentArguments(pair);
        for (const [what, args] of Object.entries(sent)) {
          expect(args, `${what} was sent channels, not a uri`).toMatchObject({
            channels: [
              {
                "channel-type": "main",
                addr: { transport: address === "file" ? "file" : "socket" },
              },
            ],
          });
          expect(args, `${what} has no uri`).not.toHaveProperty("uri");
        }
      },
    );
  }

  for (const command of ["migrate", "migrate-incoming"] as const) {
    test(
      `${command} with both uri and channels is refused with QEMU's QMP error ${where(b)}`,
      full,
      async ({ scenario }) => {
        const transport: Transport = {
          kind: "channels",
          give: { command, arguments: "uri-and-channels" },
        };
        const { result } = await scenario({
          memoryMiB: MEMORY_MIB,
          transport,
          skipIf: (p) => missingTransport(p, transport),
          expect: {
            status: "qmp-error",
            command,
            class: "GenericError",
            desc: new RegExp(
              // 9.1+ (migration_channel_parse_input), or 9.0's own words in qmp_migrate.
              `^(${EITHER}|'uri' and 'channels' arguments are mutually exclusive; exactly one of the two should be present in '${command}' qmp command ?)$`,
            ),
          },
        });
        expect(result.qmpError?.command).toBe(command);
        expect(result.source.vm.running, "the source VM still runs").toBe(true);
      },
    );

    test(
      `${command} with neither uri nor channels is refused with QEMU's QMP error ${where(b)}`,
      full,
      async ({ scenario }) => {
        const transport: Transport = { kind: "channels", give: { command, arguments: "neither" } };
        const { result } = await scenario({
          memoryMiB: MEMORY_MIB,
          transport,
          skipIf: (p) => missingTransport(p, transport),
          expect: {
            status: "qmp-error",
            command,
            class: "GenericError",
            desc: new RegExp(
              `^(${EITHER}|neither 'uri' or 'channels' argument are specified in '${command}' qmp command ?)$`,
            ),
          },
        });
        expect(result.qmpError?.command).toBe(command);
        expect(result.source.vm.running, "the source VM still runs").toBe(true);
      },
    );
  }
});
