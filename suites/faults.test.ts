// Real faults on the wire: a FaultProxy between source and destination (every connection goes
// through it) cuts, stalls, throttles, or flips a byte of the migration stream. Whatever breaks,
// the source VM keeps running with its memory intact and migrates again to a fresh destination.

import { expect } from "vitest";
import type { MigrationPair } from "../harness/migration/pair.ts";
import { timeoutMs } from "../harness/util/timeouts.ts";
import { MiB } from "../harness/util/units.ts";
import {
  expectDestinationBroke,
  expectNothingLost,
  expectSideEnded,
  incomingOptions,
} from "./after-failure.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;

function proxyOf(pair: MigrationPair) {
  const proxy = pair.proxy;
  if (!proxy) throw new Error("the pair has no fault proxy (scenario faultProxy: true)");
  return proxy;
}

/** The source's ram.transferred at the latest snapshot taken now. */
async function transferred(
  pair: MigrationPair,
): Promise<{ t: number; bytes: number; status: string }> {
  const s = await pair.snapshot("source");
  return {
    t: performance.now(),
    bytes: s.migration.ram?.transferred ?? 0,
    status: s.migration.status ?? "none",
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const STILL_BYTES = 64 * 1024;

/**
 * The source's transferred once a stalled stream has stopped moving: socket buffers and the
 * proxy's queue fill first, and the receiving socket's buffer autotunes up to
 * net.ipv4.tcp_rmem's maximum (32 MiB on this machine), at whatever pace the host allows.
 */
async function settledTransferred(pair: MigrationPair, timeoutMs: number) {
  const deadline = performance.now() + timeoutMs;
  let last = await transferred(pair);
  let still = 0;
  for (;;) {
    await sleep(250);
    const now = await transferred(pair);
    // Two quiet windows in a row: one can fall between two bursts of a busy host.
    still = now.bytes - last.bytes < STILL_BYTES ? still + 1 : 0;
    if (still === 2) return now;
    if (performance.now() > deadline) {
      throw new Error(
        `the stalled stream kept moving for ${timeoutMs} ms (transferred ${now.bytes} bytes, +${now.bytes - last.bytes} in the last 250 ms): the stall does not hold`,
      );
    }
    last = now;
  }
}

forEachQemu("faults on the wire", (b) => {
  test(`a connection cut during active precopy: source failed, VM and memory intact, migrates again ${where(b)}`, async ({
    scenario,
  }) => {
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      faultProxy: true,
      incoming: incomingOptions,
      hold: { passes: 1 },
      expect: { status: "failed" },
      hooks: { whileHeld: (p) => proxyOf(p).cut() },
    });
    expectSideEnded(pair, "source", result.source, "failed");
    pair.timeline.record(
      "harness",
      "note",
      `source error-desc: ${result.source.migration["error-desc"]}`,
    );
    if (pair.destination.isRunning())
      await pair.waitForStatus("destination", "failed", { failOn: [] });
    expectDestinationBroke(pair, await pair.finalState("failed"));
    await expectNothingLost(pair, MEMORY_MIB);
  });

  test(`multifd: the main channel and every multifd channel go through the proxy ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      faultProxy: true,
      capabilities: { both: { multifd: true } },
      parameters: { both: { "multifd-channels": 4 } },
    });
    expectCompletedMigration(pair, result, MEMORY_MIB);
    const conns = proxyOf(pair).stats().connections;
    pair.timeline.record(
      "harness",
      "note",
      `proxied connections: ${conns.map((c) => `#${c.index} ${c.forwarded.up} up / ${c.forwarded.down} down`).join(", ")}`,
    );
    expect(conns.length, "main channel + 4 multifd channels").toBe(5);
    // The pages travel on the multifd channels: each of the four carried some.
    const carrying = conns.filter((c) => c.forwarded.up > 1024 * 1024);
    expect(carrying.length, "channels that carried over 1 MiB").toBeGreaterThanOrEqual(4);
  });

  test(`a stalled stream stays active with no progress, then completes once released ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    let figures = "";
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      faultProxy: true,
      // A first pass of seconds, caught mid-stream; a slow guest converges once released.
      guest: { kind: "bootblock", dirtyRateMiBps: 4 },
      parameters: { source: { "max-bandwidth": 32 * MiB, "downtime-limit": 300 } },
      hooks: {
        afterStart: async (p) => {
          await p.waitUntil(
            "source transferred > 8 MiB",
            (s) => (s.source.migration.ram?.transferred ?? 0) > 8 * MiB,
          );
          proxyOf(p).stall();
          const a = await settledTransferred(p, timeoutMs("migration"));
          await sleep(1500);
          const z = await transferred(p);
          const dst = (await p.snapshot("destination")).migration.status;
          figures = `stalled: transferred ${a.bytes} -> ${z.bytes} bytes over ${Math.round(z.t - a.t)} ms, source ${z.status}, destination ${dst}`;
          p.timeline.record("harness", "note", figures);
          expect(z.status, "source status while stalled").toBe("active");
          expect(dst, "destination status while stalled").toBe("active");
          expect(z.bytes - a.bytes, `no progress while stalled (${figures})`).toBeLessThan(
            STILL_BYTES,
          );
          proxyOf(p).release();
        },
      },
    });
    expectCompletedMigration(pair, result, MEMORY_MIB);
    expect(figures).toMatch(/stalled/);
  });

  test(`a throttled link: throughput from transferred deltas within 30% of the proxy's rate ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    const rate = 24 * MiB;
    let measured = 0;
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      faultProxy: true,
      // QEMU's own limit far above the link's: the link is the bottleneck.
      hooks: {
        afterIncoming: (p) => proxyOf(p).throttle(rate),
        afterStart: async (p) => {
          await p.waitUntil(
            "source transferred > 4 MiB",
            (s) => (s.source.migration.ram?.transferred ?? 0) > 4 * MiB,
          );
          const a = await transferred(p);
          await sleep(2000);
          const z = await transferred(p);
          measured = ((z.bytes - a.bytes) / (z.t - a.t)) * 1000;
          p.timeline.record(
            "harness",
            "note",
            `throttled to ${rate} B/s: source transferred ${z.bytes - a.bytes} bytes in ${Math.round(z.t - a.t)} ms = ${Math.round(measured)} B/s (${(measured / rate).toFixed(3)} of the rate)`,
          );
          proxyOf(p).throttle(undefined);
        },
      },
    });
    expect(
      measured / rate,
      `measured ${Math.round(measured)} B/s against ${rate} B/s`,
    ).toBeGreaterThan(0.7);
    expect(
      measured / rate,
      `measured ${Math.round(measured)} B/s against ${rate} B/s`,
    ).toBeLessThan(1.3);
    expectCompletedMigration(pair, result, MEMORY_MIB);
  });

  test(`a flipped byte: the destination refuses the stream, the source VM keeps running ${where(b)}`, {
    tags: ["full"],
  }, async ({ scenario }) => {
    const { pair, result } = await scenario({
      memoryMiB: MEMORY_MIB,
      faultProxy: true,
      incoming: incomingOptions,
      // Byte 0 of the stream: the first byte of QEMU_VM_FILE_MAGIC ("QEVM").
      hooks: { afterIncoming: (p) => proxyOf(p).flipByte(0, { mask: 0x01 }) },
      expect: { status: "failed" },
    });
    expect(proxyOf(pair).flipped, "the byte was flipped").toBe(true);
    // Its error-desc where it has one, else what it printed (its last stderr line).
    const stderr = () => pair.destination.stderrTail().trim().split("\n").pop();
    const refusal = pair.destination.isRunning()
      ? ((await pair.waitForStatus("destination", "failed", { failOn: [] })).destination.migration[
          "error-desc"
        ] ?? stderr())
      : pair.describeExit("destination");
    pair.timeline.record("harness", "note", `destination refused the stream: ${refusal}`);
    expect(refusal, "the destination's own error").toMatch(
      /migration stream|magic|load of migration failed|Invalid/i,
    );
    expectSideEnded(pair, "source", result.source, "failed");
    expectDestinationBroke(pair, await pair.finalState("failed"));
    await expectNothingLost(pair, MEMORY_MIB);
  });
});
