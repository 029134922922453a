// Migration over TLS: tls-creds-psk (a keys file per run) and tls-creds-x509 (a CA, server and
// client certificates made per run with openssl), over tcp, a unix socket and with multifd.
// Trusted: completes with the guest's RAM intact. Hostile (a PSK mismatch, a hostname the
// server certificate does not name, a client certificate of a rogue CA, an anonymous client
// where the server verifies peers, a client tls-authz does not list): the source fails with
// QEMU's error and its VM keeps running. And on the wire: a TLS migration never carries a page
// tag of the boot-block guest in the clear, where a plain one carries them all.

import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, inject } from "vitest";
import { BOOTBLOCK_LAYOUT } from "../harness/guest/bootblock.ts";
import type { MigrationPair, MigrationResult } from "../harness/migration/pair.ts";
import { declareSwitchoverBandwidth } from "../harness/migration/transport-support.ts";
import type { Scenario } from "../harness/scenario/scenario.ts";
import {
  makePskDir,
  makeX509Set,
  objectArgs,
  TLS_IDS,
  type X509Set,
} from "../harness/transport/tls-creds.ts";
import type { Transport } from "../harness/transport/transport.ts";
import { WireTap } from "../harness/transport/wire-tap.ts";
import { timeoutMs } from "../harness/util/timeouts.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 64;
const full = { tags: ["full"] };

let root: string;
let x509: X509Set;
let pskCount = 0;

beforeAll(async () => {
  // In the run's temp root: swept at the end of the run whatever happens.
  root = mkdtempSync(join(inject("runDir"), "tls-"));
  x509 = await makeX509Set(join(root, "x509"));
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A fresh PSK dir; `key` to make the destination's differ from the source's. */
function pskDir(key?: string): string {
  return makePskDir(join(root, `psk-${++pskCount}`), key ? { key } : {});
}

/** PSK credentials on both sides (the same keys file unless the destination has its own). */
function psk(server = pskDir(), client = server): Pick<Scenario, "qemuArgs" | "parameters"> {
  const id = TLS_IDS.psk;
  return {
    qemuArgs: {
      source: objectArgs("tls-creds-psk", {
        id,
        endpoint: "client",
        dir: client,
        username: "qemu",
      }),
      destination: objectArgs("tls-creds-psk", { id, endpoint: "server", dir: server }),
    },
    parameters: { both: { "tls-creds": id } },
  };
}

/** x509 credentials: the server's, and a client dir of the set; the server verifies peers. */
function x509Creds(
  client: string,
  options: { verifyPeer?: boolean; hostname?: string } = {},
): Pick<Scenario, "qemuArgs" | "parameters"> {
  const id = TLS_IDS.x509;
  const verify = options.verifyPeer ?? true;
  // A rogue client's own sanity check would refuse its certificate at start-up (not signed by
  // the CA it trusts): it is the server's check under test, so the client skips its own.
  const sanity: Record<string, string> =
    client === x509.untrustedClient ? { "sanity-check": "off" } : {};
  return {
    qemuArgs: {
      source: objectArgs("tls-creds-x509", { id, endpoint: "client", dir: client, ...sanity }),
      destination: objectArgs("tls-creds-x509", {
        id,
        endpoint: "server",
        dir: x509.server,
        "verify-peer": verify ? "on" : "off",
      }),
    },
    parameters: {
      both: { "tls-creds": id },
      ...(options.hostname ? { source: { "tls-hostname": options.hostname } } : {}),
    },
  };
}

/**
 * A hostile handshake. Where migrate-incoming takes exit-on-error=false (9.1+) the destination
 * keeps running whatever happens. Elsewhere a destination whose server side refused the
 * handshake drops that connection and keeps listening, while one that accepted it (the client
 * refused the server) reads a stream that ends at once and exits 1: `loadsAndFails`.
 */
function survive(loadsAndFails: boolean): Pick<Scenario, "incoming" | "hooks"> {
  return {
    incoming: (pair) =>
      pair.features("destination").migrateIncomingHasExitOnError ? { exitOnError: false } : {},
    hooks: {
      beforeMigrate: (pair) => {
        if (loadsAndFails && !pair.features("destination").migrateIncomingHasExitOnError) {
          pair.expectExit("destination", { exitCode: 1 });
        }
      },
    },
  };
}

/**
 * The source failed with `source` in its error-desc, its VM still runs, the destination never
 * ran the guest; `destination`: the reason the destination printed (a server-side refusal reaches
 * the source only as a write error on a closed connection).
 */
async function expectRefused(
  pair: MigrationPair,
  result: MigrationResult,
  says: { source: RegExp; destination?: RegExp },
): Promise<void> {
  expect(result.outcome).toBe("failed");
  expect(result.source.migration["error-desc"] ?? "", "source error-desc").toMatch(says.source);
  expect(
    result.source.vm.running,
    `source VM after a refused TLS migration: ${result.source.vm.status}`,
  ).toBe(true);
  expect(result.destination.vm.running, "the destination never ran the guest").toBe(false);
  const wanted = says.destination;
  if (!wanted) return;
  // The destination prints its reason as it drops the connection: moments before the source fails.
  const deadline = Date.now() + timeoutMs(2000);
  while (!wanted.test(pair.destination.stderrTail()) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(pair.destination.stderrTail(), "the destination's stderr").toMatch(wanted);
}

/** A write on a connection the destination closed, in each QEMU's words (7.2, 10.0, 11.1). */
const DROPPED =
  /^(Cannot write to TLS channel: Input\/output error|Unable to write to socket: (Broken pipe|Connection reset by peer)|Cannot uncork TLS output: Error in the push function\.)$/;

/** The boot-block page tags (bytes 8..15 of a page: its own guest-physical address, u64 LE). */
function pageTags(pair: MigrationPair, count: number): Buffer[] {
  const params = pair.guest.params;
  if (!params) throw new Error("no boot-block guest: no page tags to look for");
  const pages = (params.rangeEnd - params.rangeStart) / BOOTBLOCK_LAYOUT.pageSize;
  return Array.from({ length: count }, (_, i) => {
    const address = params.rangeStart + Math.floor((i * pages) / count) * BOOTBLOCK_LAYOUT.pageSize;
    const tag = Buffer.alloc(8);
    tag.writeBigUInt64LE(BigInt(address));
    return tag;
  });
}

forEachQemu("tls", (b) => {
  test(`PSK over tcp: completes, RAM intact ${where(b)}`, async ({ scenario }) => {
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      ...psk(),
      hooks: { beforeMigrate: declareSwitchoverBandwidth },
    });
    expectCompletedMigration(pair, result, MEMORY_MIB);
  });

  for (const transport of [{ kind: "unix" }, { kind: "tcp" }] as const satisfies Transport[]) {
    test(
      `PSK over ${transport.kind}${transport.kind === "tcp" ? " with multifd" : ""}: completes, RAM intact ${where(b)}`,
      full,
      async ({ scenario }) => {
        const creds = psk();
        const multifd = transport.kind === "tcp";
        const { pair, result } = await scenario({
          memoryMiB: MEMORY_MIB,
          transport,
          ...creds,
          ...(multifd
            ? {
                capabilities: { both: { multifd: true } },
                parameters: { both: { ...creds.parameters?.both, "multifd-channels": 4 } },
              }
            : {}),
          hooks: { beforeMigrate: declareSwitchoverBandwidth },
        });
        expectCompletedMigration(pair, result, MEMORY_MIB);
      },
    );
  }

  test(
    `PSK mismatch: the handshake fails, the source keeps running ${where(b)}`,
    full,
    async ({ scenario }) => {
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        ...psk(pskDir("00".repeat(32)), pskDir("11".repeat(32))),
        ...survive(false),
        expect: { status: "failed" },
      });
      await expectRefused(pair, result, {
        source: /^TLS handshake failed: The TLS connection was non-properly terminated\.$/,
        destination: /TLS handshake failed: An illegal parameter has been received\./,
      });
    },
  );

  test(
    `x509 over tcp, the server verifying the client: completes, RAM intact ${where(b)}`,
    full,
    async ({ scenario }) => {
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        ...x509Creds(x509.client),
        hooks: { beforeMigrate: declareSwitchoverBandwidth },
      });
      expectCompletedMigration(pair, result, MEMORY_MIB);
    },
  );

  test(
    `x509 over a unix socket with tls-hostname, and multifd: completes ${where(b)}`,
    full,
    async ({ scenario }) => {
      const creds = x509Creds(x509.client, { hostname: "localhost" });
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        transport: { kind: "unix" },
        ...creds,
        capabilities: { both: { multifd: true } },
        parameters: {
          ...creds.parameters,
          both: { ...creds.parameters?.both, "multifd-channels": 2 },
        },
        hooks: { beforeMigrate: declareSwitchoverBandwidth },
      });
      expectCompletedMigration(pair, result, MEMORY_MIB);
    },
  );

  test(
    `x509 over a unix socket without tls-hostname: the source has no name to check the server by ${where(b)}`,
    full,
    async ({ scenario }) => {
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        transport: { kind: "unix" },
        ...x509Creds(x509.client),
        // The client gives up after the handshake: the destination reads an empty stream.
        ...survive(true),
        expect: { status: "failed" },
      });
      await expectRefused(pair, result, { source: /^No hostname for certificate validation$/ });
    },
  );

  test(
    `x509 hostname mismatch: the source refuses the server certificate ${where(b)}`,
    full,
    async ({ scenario }) => {
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        ...x509Creds(x509.client, { hostname: "wrong.example.com" }),
        ...survive(true),
        expect: {
          status: "failed",
          errorDesc: /Certificate does not match the hostname wrong\.example\.com/,
        },
      });
      await expectRefused(pair, result, {
        source: /^Certificate does not match the hostname wrong\.example\.com$/,
      });
    },
  );

  test(
    `x509 client certificate of an untrusted CA: the server refuses it ${where(b)}`,
    full,
    async ({ scenario }) => {
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        ...x509Creds(x509.untrustedClient),
        ...survive(false),
        expect: { status: "failed" },
      });
      await expectRefused(pair, result, {
        source: DROPPED,
        destination: /The certificate hasn't got a known issuer/,
      });
    },
  );

  test(
    `x509 anonymous client where the server verifies peers: refused ${where(b)}`,
    full,
    async ({ scenario }) => {
      const { pair, result } = await scenario({
        memoryMiB: MEMORY_MIB,
        ...x509Creds(x509.anonymousClient),
        ...survive(false),
        expect: { status: "failed" },
      });
      await expectRefused(pair, result, {
        source: DROPPED,
        destination: /Verify failed: No certificate was found\./,
      });
    },
  );

  for (const listed of [true, false]) {
    test(
      `tls-authz with authz-simple: a client ${listed ? "it lists completes" : "it does not list is refused"} ${where(b)}`,
      full,
      async ({ scenario }) => {
        const creds = x509Creds(x509.client);
        const identity = listed ? x509.clientDn : "O=qemu-migtest,CN=someone else";
        const { pair, result } = await scenario({
          memoryMiB: MEMORY_MIB,
          ...creds,
          parameters: {
            ...creds.parameters,
            destination: { "tls-authz": TLS_IDS.authz },
          },
          ...(listed ? {} : survive(false)),
          hooks: {
            beforeMigrate: async (pair) => {
              // object-add, not -object: the DN holds commas, which -object cannot carry.
              await pair.execute("destination", "object-add", {
                "qom-type": "authz-simple",
                id: TLS_IDS.authz,
                identity,
              });
              await declareSwitchoverBandwidth(pair);
            },
          },
          ...(listed ? {} : { expect: { status: "failed" } as const }),
        });
        if (listed) expectCompletedMigration(pair, result, MEMORY_MIB);
        else
          await expectRefused(pair, result, {
            source: DROPPED,
            destination: new RegExp(`TLS x509 authz check for ${x509.clientDn} is denied`),
          });
      },
    );
  }

  for (const tls of [false, true]) {
    test(
      `on the wire: a ${tls ? "TLS" : "plain"} migration ${tls ? "carries no page tag in the clear" : "carries the page tags"} ${where(b)}`,
      full,
      async ({ scenario }) => {
        let tap: WireTap | undefined;
        try {
          const { pair, result } = await scenario({
            memoryMiB: MEMORY_MIB,
            live: false,
            ...(tls ? psk() : {}),
            outgoingUri: async (uri) => {
              tap = await WireTap.start(uri);
              return tap.uri;
            },
          });
          expectCompletedMigration(pair, result, MEMORY_MIB);
          const tags = pageTags(pair, 64);
          expect(tap?.connections, "connections through the tap").toBeGreaterThanOrEqual(1);
          expect(tap?.bytes ?? 0, "bytes through the tap").toBeGreaterThan(MEMORY_MIB << 19);
          const found = tap?.found(tags) ?? [];
          expect(found.length, `page tags on the wire (of ${tags.length})`).toBe(
            tls ? 0 : tags.length,
          );
        } finally {
          await tap?.close();
        }
      },
    );
  }
});
