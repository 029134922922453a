// The fault proxy over plain loopback sockets: a sink that counts what arrives stands for the
// destination, a client for the source.

import { createConnection, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { FaultProxy } from "./fault-proxy.ts";

interface Sink {
  server: Server;
  uri: string;
  received: Buffer[];
  sockets: Socket[];
  bytes(): number;
  ended: Promise<"end" | "error">[];
}

async function sink(): Promise<Sink> {
  const s: Sink = {
    server: createServer(),
    uri: "",
    received: [],
    sockets: [],
    bytes: () => s.received.reduce((n, b) => n + b.length, 0),
    ended: [],
  };
  s.server.on("connection", (sock) => {
    s.sockets.push(sock);
    s.ended.push(
      new Promise((r) => {
        sock.on("end", () => r("end"));
        sock.on("error", () => r("error"));
        sock.on("close", () => r("end"));
      }),
    );
    sock.on("data", (d: Buffer) => {
      s.received.push(d);
      if (d.toString().startsWith("ping")) sock.write("pong");
    });
  });
  await new Promise<void>((r) => s.server.listen(0, "127.0.0.1", r));
  const a = s.server.address();
  s.uri = `tcp:127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
  return s;
}

async function connect(uri: string): Promise<Socket> {
  const [, host, port] = /^tcp:(.+):(\d+)$/.exec(uri) ?? [];
  const c = createConnection({ host: host as string, port: Number(port) });
  await new Promise<void>((resolve, reject) => {
    c.once("connect", () => resolve());
    c.once("error", reject);
  });
  c.on("error", () => undefined);
  return c;
}

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 5));
  }
}

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

async function setup() {
  const dst = await sink();
  const proxy = await FaultProxy.start(dst.uri);
  open.push(proxy, { close: () => new Promise((r) => dst.server.close(r)) });
  for (const s of dst.sockets) open.push({ close: () => s.destroy() });
  return { dst, proxy };
}

describe("fault proxy", { timeout: 10_000 }, () => {
  test("forwards both ways, one upstream connection per accepted one", async () => {
    const { dst, proxy } = await setup();
    const a = await connect(proxy.uri);
    const b = await connect(proxy.uri);
    const reply = new Promise<string>((r) => a.once("data", (d) => r(d.toString())));
    a.write("ping");
    b.write(Buffer.alloc(1000, 1));
    expect(await reply).toBe("pong");
    await until(() => dst.bytes() === 1004);
    expect(proxy.connections.map((c) => c.index)).toEqual([0, 1]);
    expect(proxy.upBytes).toBe(1004);
    a.destroy();
    b.destroy();
  });

  test("cut at a byte count: exactly that many bytes arrive, both ends are reset", async () => {
    const { dst, proxy } = await setup();
    proxy.cut({ atUpBytes: 100_000 });
    const c = await connect(proxy.uri);
    const closed = new Promise<void>((r) => c.on("close", () => r()));
    c.write(Buffer.alloc(300_000, 7));
    await closed;
    await until(() => dst.sockets[0]?.destroyed === true || dst.sockets[0]?.readableEnded === true);
    expect(dst.bytes()).toBe(100_000);
    expect(proxy.connections[0]?.endedBy).toBe("cut at 100000 bytes of the migration stream");
    // The network is gone: a new connection is refused.
    await expect(connect(proxy.uri)).rejects.toThrow(/ECONNREFUSED/);
  });

  test("stall holds the bytes with the connection open; release delivers them", async () => {
    const { dst, proxy } = await setup();
    const c = await connect(proxy.uri);
    await until(() => proxy.connections.length === 1);
    proxy.stall();
    c.write(Buffer.alloc(50_000, 2));
    await new Promise((r) => setTimeout(r, 200));
    expect(dst.bytes()).toBe(0);
    expect(c.destroyed).toBe(false);
    proxy.release();
    await until(() => dst.bytes() === 50_000);
    c.destroy();
  });

  test("throttle: the measured rate is the asked one within 15%", async () => {
    const { dst, proxy } = await setup();
    const rate = 2_000_000;
    proxy.throttle(rate);
    const c = await connect(proxy.uri);
    c.write(Buffer.alloc(4_000_000, 3));
    await until(() => dst.bytes() > 0);
    const t0 = performance.now();
    const b0 = dst.bytes();
    await new Promise((r) => setTimeout(r, 800));
    const measured = ((dst.bytes() - b0) / (performance.now() - t0)) * 1000;
    expect(measured / rate).toBeGreaterThan(0.85);
    expect(measured / rate).toBeLessThan(1.15);
    c.destroy();
  });

  test("delay: nothing arrives before the delay, everything after it", async () => {
    const { dst, proxy } = await setup();
    proxy.delay(300);
    const c = await connect(proxy.uri);
    const t0 = performance.now();
    c.write("hello");
    await until(() => dst.bytes() === 5);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    c.destroy();
  });

  test("flip: exactly one byte differs, at the asked offset", async () => {
    const { dst, proxy } = await setup();
    proxy.flipByte(70_000, { mask: 0x01 });
    const c = await connect(proxy.uri);
    const data = Buffer.alloc(200_000);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    c.write(data);
    await until(() => dst.bytes() === data.length);
    const got = Buffer.concat(dst.received);
    const diffs = [...got.keys()].filter((i) => got[i] !== data[i]);
    expect(diffs).toEqual([70_000]);
    expect(got[70_000]).toBe((70_000 & 0xff) ^ 1);
    expect(proxy.flipped).toBe(true);
    c.destroy();
  });

  test("close ends the listener and every connection", async () => {
    const { proxy } = await setup();
    const c = await connect(proxy.uri);
    await until(() => proxy.connections.length === 1);
    const closed = new Promise<void>((r) => c.on("close", () => r()));
    await proxy.close();
    await closed;
    expect(proxy.open).toBe(false);
  });
});
