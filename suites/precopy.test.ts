// Precopy between two real QEMUs, over tcp and a unix socket, live and not, on every binary under
// test. Both sides, both interfaces: QMP query-migrate and HMP info migrate are read on source and
// destination, checked on their own and against each other.

import { expect } from "vitest";
import { compareWithQmp } from "../harness/hmp/compare-qmp.ts";
import { parseInfoMigrate } from "../harness/hmp/info-migrate.ts";
import { expectCompletedMigration, expectLegalEvents } from "./expect-migration.ts";
import { forEachQemu, smokeOnce, test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;

forEachQemu(
  "precopy",
  (b) => {
    for (const transport of ["tcp", "unix"] as const) {
      test(
        `precopy over ${transport} completes and both sides agree ${where(b)}`,
        transport === "tcp" ? {} : smokeOnce(b),
        async ({ scenario }) => {
          const { pair, result } = await scenario({
            memoryMiB: MEMORY_MIB,
            transport: { kind: transport },
          });
          expect(result.uri.startsWith(`${transport}:`)).toBe(true);
          expectCompletedMigration(pair, result, MEMORY_MIB);
        },
      );
    }

    test(
      `non-live precopy (source stopped first) completes and the guest resumes on the destination ${where(b)}`,
      smokeOnce(b),
      async ({ scenario }) => {
        const { pair, result } = await scenario({ memoryMiB: MEMORY_MIB, live: false });
        expectCompletedMigration(pair, result, MEMORY_MIB);
        const resumed = pair.timeline
          .of("destination", "command")
          .some((c) => c.data.command === "cont");
        expect(resumed, "the destination was paused (the source's run state) and resumed").toBe(
          true,
        );
      },
    );

    test(
      `migration to a port nobody listens on fails and the source keeps running ${where(b)}`,
      smokeOnce(b),
      async ({ scenario }) => {
        const { pair, result } = await scenario({
          memoryMiB: MEMORY_MIB,
          transport: { kind: "tcp-nobody-listening" },
          expect: { status: "failed", errorDesc: /refused|connect/i },
        });
        const src = result.source;
        expect(result.outcome).toBe("failed");
        expect(
          src.vm.running,
          `source VM must still run after a failed migration (query-status: ${src.vm.status})`,
        ).toBe(true);
        expectLegalEvents(pair, "source", "failed", src.events);
        const hmp = parseInfoMigrate(src.infoMigrate);
        expect(hmp.status, "source HMP status").toBe("failed");
        expect(compareWithQmp(hmp, src.migration, { live: false }), "source HMP vs QMP").toEqual(
          [],
        );
        // The destination was never contacted: it has not even been told to listen.
        expect(result.destination.migration.status ?? "none", "destination untouched").toBe("none");
      },
    );

    test(
      `a transport the configuration cannot use is refused with QEMU's QMP error ${where(b)}`,
      smokeOnce(b),
      async ({ scenario }) => {
        // mapped-ram writes pages at fixed file offsets: a socket cannot carry it, and the
        // destination says so when told to listen. A QEMU without mapped-ram skips with that reason.
        const { result } = await scenario({
          memoryMiB: MEMORY_MIB,
          capabilities: { both: { "mapped-ram": true } },
          expect: {
            status: "qmp-error",
            command: "migrate-incoming",
            class: "GenericError",
            desc: /seekable|file/i,
          },
        });
        expect(result.outcome).toBe("qmp-error");
        expect(result.qmpError?.command).toBe("migrate-incoming");
        expect(result.source.migration.status ?? "none", "nothing started on the source").toBe(
          "none",
        );
      },
    );
  },
  // One of the four families the second target must pass in the smoke set too.
  { smoke: "all" },
);
