import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, expectTypeOf, test } from "vitest";
import { QMPClient } from "./client.ts";
import {
  ExecuteError,
  QMPConnectError,
  QMPDisconnectedError,
  QMPError,
  QMPListenerClosedError,
  QMPProtocolError,
  QMPTimeoutError,
} from "./errors.ts";
import { FakeQMPServer, type FakeQMPServerOptions } from "./fake-server.ts";
import type { QMPEvent, StatusInfo } from "./qapi.ts";

let dir: string;
let sockPath: string;
let server: FakeQMPServer | undefined;
let client: QMPClient | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "qmp-"));
  sockPath = join(dir, "q.sock");
});

afterEach(async () => {
  await client?.disconnect();
  await server?.close();
  client = undefined;
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function setup(options: FakeQMPServerOptions = {}) {
  server = await FakeQMPServer.listen(sockPath, options);
  client = new QMPClient({ name: "source", defaultTimeoutMs: 2000 });
  await client.connect(sockPath, { timeoutMs: 2000 });
  return { server, client };
}

function settle<T>(p: Promise<T>): Promise<unknown> {
  return p.then(
    (v) => v,
    (e: unknown) => e,
  );
}

describe("connect", () => {
  test("keeps the greeting and version, runstate goes idle -> running -> idle", async () => {
    server = await FakeQMPServer.listen(sockPath, { version: { major: 9, minor: 1, micro: 3 } });
    client = new QMPClient({ name: "source" });
    expect(client.runstate).toBe("idle");
    expect(() => client?.greeting).toThrow(/source: no QMP greeting yet/);
    const connecting = client.connect(sockPath, { timeoutMs: 2000 });
    expect(client.runstate).toBe("connecting");
    await connecting;
    expect(client.runstate).toBe("running");
    expect(client.version.qemu).toEqual({ major: 9, minor: 1, micro: 3 });
    expect(client.greeting.QMP.version.package).toBe("fake-qmp-server");
    expect(client.greeting.QMP.capabilities).toEqual(["oob"]);
    await client.disconnect();
    expect(client.runstate).toBe("idle");
    expect(client.version.qemu.major).toBe(9); // kept after the end, for reports
  });

  test("enables oob when offered", async () => {
    const { server, client } = await setup({ capabilities: ["oob"] });
    expect(server.negotiated).toEqual({ enable: ["oob"] });
    expect(client.capabilities).toEqual(["oob"]);
  });

  test("does not enable oob when not offered", async () => {
    const { server, client } = await setup({ capabilities: [] });
    expect(server.negotiated).toEqual({});
    expect(server.received[0]).not.toHaveProperty("arguments");
    expect(client.capabilities).toEqual([]);
    await expect(client.execute("query-status", undefined, { oob: true })).rejects.toThrow(
      /oob was not negotiated/,
    );
  });

  test("no greeting: QMPConnectError saying so, with path and timeout", async () => {
    server = await FakeQMPServer.listen(sockPath, { greet: false });
    client = new QMPClient({ name: "destination" });
    const started = Date.now();
    const error = await settle(client.connect(sockPath, { timeoutMs: 200 }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(error).toBeInstanceOf(QMPConnectError);
    expect(error).toMatchObject({ phase: "greeting", socketPath: sockPath });
    expect((error as Error).message).toMatch(/^destination: /);
    expect((error as Error).message).toContain(sockPath);
    expect((error as Error).message).toContain("no QMP greeting within 200 ms");
    expect(client.runstate).toBe("idle");
  });

  test("missing socket: QMPConnectError naming the path; connect() can then be retried", async () => {
    client = new QMPClient({ name: "source" });
    const error = await settle(client.connect(sockPath, { timeoutMs: 500 }));
    expect(error).toBeInstanceOf(QMPConnectError);
    expect(error).toMatchObject({ phase: "connect" });
    expect((error as Error).message).toMatch(
      /source: cannot connect to QMP socket .*q\.sock.*ENOENT/,
    );
    server = await FakeQMPServer.listen(sockPath);
    await client.connect(sockPath, { timeoutMs: 2000 });
    expect(client.runstate).toBe("running");
  });

  test("something other than a greeting first: QMPConnectError", async () => {
    server = await FakeQMPServer.listen(sockPath, { greet: false });
    client = new QMPClient({ name: "source" });
    const connecting = settle(client.connect(sockPath, { timeoutMs: 2000 }));
    await server.waitForClient();
    server.send({ hello: "world" });
    const error = await connecting;
    expect(error).toBeInstanceOf(QMPConnectError);
    expect((error as Error).message).toContain('expected the QMP greeting, got {"hello":"world"}');
  });

  test("a used client cannot connect again", async () => {
    const { client } = await setup();
    await client.disconnect();
    await expect(client.connect(sockPath, { timeoutMs: 500 })).rejects.toThrow(/already used/);
  });
});

describe("execute", () => {
  test("returns the typed `return` member", async () => {
    const { server, client } = await setup();
    server.handle("query-status", () => ({
      return: { running: true, status: "running", singlestep: false },
    }));
    const status = client.execute<StatusInfo>("query-status");
    expectTypeOf(status).toEqualTypeOf<Promise<StatusInfo>>();
    expect(await status).toEqual({ running: true, status: "running", singlestep: false });
    const sent = server.received.at(-1);
    expect(sent).toEqual({ execute: "query-status", id: expect.stringMatching(/^__qmp#\d{5}$/) });
  });

  test("sends arguments and hmp() returns HMP's text", async () => {
    const { server, client } = await setup();
    server.handle("human-monitor-command", (msg) => ({
      return: `ran ${String(msg.arguments?.["command-line"])}\r\n`,
    }));
    expect(await client.hmp("info migrate")).toBe("ran info migrate\r\n");
    expect(server.received.at(-1)?.arguments).toEqual({ "command-line": "info migrate" });
  });

  test("ExecuteError carries class, desc, command, arguments, sent and received", async () => {
    const { server, client } = await setup();
    server.handle("query-foo", () => ({ error: { class: "GenericError", desc: "no foo here" } }));
    const error = await settle(client.execute("query-foo", { x: 1 }));
    expect(error).toBeInstanceOf(ExecuteError);
    expect(error).toBeInstanceOf(QMPError);
    const e = error as ExecuteError;
    expect(e.message).toBe('source: query-foo {"x":1} failed: GenericError: no foo here');
    expect(e.errorClass).toBe("GenericError");
    expect(e.desc).toBe("no foo here");
    expect(e.command).toBe("query-foo");
    expect(e.arguments).toEqual({ x: 1 });
    expect(e.sent).toEqual(server.received.at(-1));
    expect(e.received).toEqual({
      id: (e.sent as { id: string }).id,
      error: { class: "GenericError", desc: "no foo here" },
    });
  });

  test("ids correlate replies that come out of order", async () => {
    const { server, client } = await setup();
    const a = client.execute("cmd-a");
    const b = client.execute("cmd-b");
    const c = client.execute("cmd-c");
    const [ra, rb, rc] = [
      await server.nextCommand(),
      await server.nextCommand(),
      await server.nextCommand(),
    ];
    expect(new Set([ra.id, rb.id, rc.id]).size).toBe(3);
    server.reply(rc, "C");
    server.reply(ra, "A");
    server.reply(rb, "B");
    expect(await Promise.all([a, b, c])).toEqual(["A", "B", "C"]);
  });

  test("messages split across chunks and coalesced into one chunk", async () => {
    server = await FakeQMPServer.listen(sockPath, { greet: false });
    client = new QMPClient({ name: "source" });
    const connecting = client.connect(sockPath, { timeoutMs: 2000 });
    await server.waitForClient();
    const greeting = `${JSON.stringify({
      QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "" }, capabilities: [] },
    })}\r\n`;
    for (const ch of greeting) {
      server.sendRaw(ch);
      await new Promise((r) => setTimeout(r, 1));
    }
    await connecting;
    const listener = client.listen();
    const a = client.execute("cmd-a");
    const b = client.execute("cmd-b");
    const ra = await server.nextCommand();
    const rb = await server.nextCommand();
    // Two replies and an event in one write; a multi-byte character split across writes.
    const text = Buffer.from(
      `{"return": "é1", "id": "${ra.id}"}\r\n{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\r\n{"return": "ü2", "id": "${rb.id}"}\r\n`,
    );
    const cut = text.indexOf(Buffer.from("ü")) + 1;
    server.sendRaw(text.subarray(0, cut));
    await new Promise((r) => setTimeout(r, 20));
    server.sendRaw(text.subarray(cut));
    expect(await a).toBe("é1");
    expect(await b).toBe("ü2");
    expect((await listener.get({ timeoutMs: 1000 })).event).toBe("STOP");
    expect(client.protocolErrors).toEqual([]);
  });

  test("timeout names client, command and args; the late reply is dropped silently", async () => {
    const { server, client } = await setup();
    const error = await settle(client.execute("migrate", { uri: "unix:/x" }, { timeoutMs: 100 }));
    expect(error).toBeInstanceOf(QMPTimeoutError);
    expect((error as QMPTimeoutError).timeoutMs).toBe(100);
    expect((error as Error).message).toBe(
      'source: no reply to migrate {"uri":"unix:/x"} within 100 ms',
    );
    server.reply(await server.nextCommand(), {}); // late
    server.handle("query-status", () => ({ return: { status: "running" } }));
    expect(await client.execute("query-status")).toEqual({ status: "running" });
    expect(client.protocolErrors).toEqual([]);
  });

  test("unknown id, missing id and non-JSON are kept as protocol errors, not a crash", async () => {
    const seen: QMPProtocolError[] = [];
    server = await FakeQMPServer.listen(sockPath);
    client = new QMPClient({ name: "source", onProtocolError: (e) => seen.push(e) });
    await client.connect(sockPath, { timeoutMs: 2000 });
    server.send({ return: {}, id: "nobody" });
    server.send({ error: { class: "GenericError", desc: "JSON parse error" } });
    server.sendRaw("this is not json\n");
    server.send({ neither: "event nor reply" });
    server.handle("query-status", () => ({ return: 1 }));
    expect(await client.execute("query-status")).toBe(1);
    expect(client.protocolErrors.map((e) => e.message)).toEqual([
      expect.stringContaining('reply with unknown id "nobody"'),
      expect.stringContaining("reply without id"),
      expect.stringContaining("not JSON"),
      expect.stringContaining("unexpected message"),
    ]);
    expect(client.protocolErrors[0]).toBeInstanceOf(QMPProtocolError);
    expect(seen).toEqual(client.protocolErrors);
    expect(client.runstate).toBe("running");
  });

  test("oob: true sends exec-oob", async () => {
    const { server, client } = await setup({ capabilities: ["oob"] });
    server.handle("migrate-pause", () => ({ return: {} }));
    await client.execute("migrate-pause", undefined, { oob: true });
    expect(server.received.at(-1)).toEqual({ "exec-oob": "migrate-pause", id: expect.any(String) });
  });

  test("onMessage records the transcript in wire order", async () => {
    const transcript: [string, unknown][] = [];
    server = await FakeQMPServer.listen(sockPath, { capabilities: [] });
    client = new QMPClient({ onMessage: (d, m) => transcript.push([d, m]) });
    await client.connect(sockPath, { timeoutMs: 2000 });
    server.handle("query-status", () => ({ return: 7 }));
    await client.execute("query-status");
    expect(transcript.map(([d, m]) => [d, Object.keys(m as object)[0]])).toEqual([
      ["received", "QMP"],
      ["sent", "execute"],
      ["received", "return"],
      ["sent", "execute"],
      ["received", "return"],
    ]);
  });
});

describe("disconnects", () => {
  test("QEMU going away fails every pending command with QMPDisconnectedError", async () => {
    const { server, client } = await setup();
    const pending = [
      settle(client.execute("migrate", { uri: "tcp:x" })),
      settle(client.execute("query-migrate")),
      settle(client.execute("cont")),
    ];
    for (let i = 0; i < 3; i++) await server.nextCommand();
    server.dropClient();
    const errors = (await Promise.all(pending)) as QMPDisconnectedError[];
    expect(errors.map((e) => e.command)).toEqual(["migrate", "query-migrate", "cont"]);
    for (const e of errors) expect(e).toBeInstanceOf(QMPDisconnectedError);
    expect(errors[0]?.message).toMatch(
      /^source: QEMU went away while migrate \{"uri":"tcp:x"\} was pending \(QEMU closed the connection, after \d+ ms\)$/,
    );
    await client.closed;
    expect(client.runstate).toBe("idle");
    const later = await settle(client.execute("query-status"));
    expect(later).toBeInstanceOf(QMPDisconnectedError);
    expect((later as Error).message).toContain("cannot execute query-status");
  });

  test("disconnect() fails pending commands, is idempotent and resolves closed", async () => {
    const { server, client } = await setup();
    const a = settle(client.execute("query-migrate"));
    await server.nextCommand();
    await Promise.all([client.disconnect(), client.disconnect()]);
    const error = await a;
    expect(error).toBeInstanceOf(QMPDisconnectedError);
    expect((error as Error).message).toContain("query-migrate was still pending when disconnect()");
    await client.closed;
    await client.disconnect();
    expect(client.closeReason).toBe("disconnect() was called");
  });

  test("disconnect() while connecting fails connect() and closes the client", async () => {
    server = await FakeQMPServer.listen(sockPath, { greet: false });
    client = new QMPClient({ name: "source" });
    const connecting = settle(client.connect(sockPath, { timeoutMs: 2000 }));
    await server.waitForClient();
    await client.disconnect();
    const error = await connecting;
    expect(error).toBeInstanceOf(QMPConnectError);
    expect((error as Error).message).toContain("disconnect() was called");
    expect(client.runstate).toBe("idle");
  });
});

describe("events", () => {
  function names(events: QMPEvent[]) {
    return events.map((e) => e.event);
  }

  test("listeners filter by name, by list and by predicate; client keeps bounded history", async () => {
    server = await FakeQMPServer.listen(sockPath);
    client = new QMPClient({ name: "source", eventHistory: 3 });
    await client.connect(sockPath, { timeoutMs: 2000 });
    const all = client.listen();
    const byName = client.listen("STOP");
    const byList = client.listen(["STOP", "RESUME"]);
    const byPredicate = client.listen(
      (e) => e.event === "MIGRATION" && e.data?.status === "active",
    );
    server.sendEvent("STOP");
    server.sendEvent("MIGRATION", { status: "setup" });
    server.sendEvent("MIGRATION", { status: "active" });
    server.sendEvent("RESUME");
    await all.waitFor((e) => e.event === "RESUME", { timeoutMs: 1000 });
    expect(names(byName.history)).toEqual(["STOP"]);
    expect(names(byList.history)).toEqual(["STOP", "RESUME"]);
    expect(byPredicate.history.map((e) => e.data)).toEqual([{ status: "active" }]);
    expect(names(all.history)).toEqual(["STOP", "MIGRATION", "MIGRATION", "RESUME"]);
    expect(names(client.events)).toEqual(["MIGRATION", "MIGRATION", "RESUME"]);
    expect((await byList.get({ timeoutMs: 100 })).event).toBe("STOP");
    expect((await byList.get({ timeoutMs: 100 })).event).toBe("RESUME");
  });

  test("listener history is bounded, clear() empties the queue only", async () => {
    const { server, client } = await setup();
    const listener = client.listen("X", { history: 2 });
    for (let i = 0; i < 4; i++) server.sendEvent("X", { i });
    await listener.waitFor((e) => e.data?.i === 3, { timeoutMs: 1000 });
    expect(listener.history.map((e) => e.data?.i)).toEqual([2, 3]);
    expect(listener.pending.length).toBe(3);
    listener.clear();
    expect(listener.pending.length).toBe(0);
    expect(listener.history.length).toBe(2);
  });

  test("async iteration yields events in order and ends when QEMU goes away", async () => {
    const { server, client } = await setup();
    const listener = client.listen("MIGRATION");
    const statuses = ["setup", "active", "completed"];
    for (const status of statuses) server.sendEvent("MIGRATION", { status });
    server.sendEvent("STOP");
    const seen: unknown[] = [];
    for await (const e of listener) {
      seen.push(e.data?.status);
      if (seen.length === 3) server.dropClient();
    }
    expect(seen).toEqual(statuses);
  });

  test("waitFor takes an already-queued event and leaves the others queued", async () => {
    const { server, client } = await setup();
    const listener = client.listen();
    const probe = client.listen("RESUME");
    server.sendEvent("STOP");
    server.sendEvent("RESUME");
    await probe.get({ timeoutMs: 1000 }); // delivery is synchronous: both are queued now
    expect(names([...listener.pending])).toEqual(["STOP", "RESUME"]);
    const started = Date.now();
    const resume = await listener.waitFor((e) => e.event === "RESUME", { timeoutMs: 5 });
    expect(resume.event).toBe("RESUME");
    expect(Date.now() - started).toBeLessThan(5);
    expect(names([...listener.pending])).toEqual(["STOP"]);
    await expect(listener.get({ timeoutMs: 5 })).resolves.toMatchObject({ event: "STOP" });
  });

  test("waitFor times out naming what it waited for and what did arrive", async () => {
    const { server, client } = await setup();
    const listener = client.listen("MIGRATION");
    server.sendEvent("MIGRATION", { status: "active" });
    await listener.get({ timeoutMs: 1000 });
    const error = await settle(
      listener.waitFor((e) => e.data?.status === "completed", {
        timeoutMs: 100,
        what: "MIGRATION completed",
      }),
    );
    expect(error).toBeInstanceOf(QMPTimeoutError);
    expect(error).toMatchObject({ what: "MIGRATION completed", timeoutMs: 100 });
    expect((error as Error).message).toBe(
      'source: no MIGRATION completed within 100 ms; last events matched: MIGRATION {"status":"active"}',
    );
    await expect(listener.get({ timeoutMs: 30 })).rejects.toThrow(/no event within 30 ms/);
  });

  test("pending waits reject on disconnect; queued events stay readable", async () => {
    const { server, client } = await setup();
    const shutdown = client.listen("SHUTDOWN");
    const other = client.listen("MIGRATION");
    const probe = client.listen("SHUTDOWN");
    const waiting = settle(other.waitFor(() => true, { timeoutMs: 5000, what: "MIGRATION" }));
    server.sendEvent("SHUTDOWN", { guest: false });
    server.sendEvent("SHUTDOWN", { guest: true });
    await probe.waitFor((e) => e.data?.guest === true, { timeoutMs: 1000 });
    server.dropClient();
    const error = await waiting;
    expect(error).toBeInstanceOf(QMPDisconnectedError);
    expect((error as Error).message).toBe(
      "source: QEMU went away while waiting for an event (QEMU closed the connection); this listener matched no events",
    );
    await expect(shutdown.get({ timeoutMs: 100 })).resolves.toMatchObject({
      data: { guest: false },
    });
    await expect(shutdown.get({ timeoutMs: 100 })).resolves.toMatchObject({
      data: { guest: true },
    });
    await expect(shutdown.get({ timeoutMs: 100 })).rejects.toBeInstanceOf(QMPDisconnectedError);
  });

  test("a throwing waitFor predicate fails that wait only; the event stays for get()", async () => {
    const { server, client } = await setup();
    const listener = client.listen();
    const broken = settle(
      listener.waitFor(
        () => {
          throw new Error("bad predicate");
        },
        { timeoutMs: 1000 },
      ),
    );
    server.sendEvent("STOP");
    expect(await broken).toMatchObject({ message: "bad predicate" });
    await expect(listener.get({ timeoutMs: 1000 })).resolves.toMatchObject({ event: "STOP" });
  });

  test("close() detaches the listener and rejects its pending get()", async () => {
    const { server, client } = await setup();
    const listener = client.listen();
    const waiting = settle(listener.get({ timeoutMs: 5000 }));
    listener.close();
    expect(await waiting).toBeInstanceOf(QMPListenerClosedError);
    server.sendEvent("STOP");
    await client.listen("STOP").get({ timeoutMs: 1000 });
    expect(listener.history).toEqual([]);
  });
});

test("no unhandled rejections from failed connects, drops and closed listeners", async () => {
  const unhandled: unknown[] = [];
  const collect = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", collect);
  try {
    const lonely = new QMPClient({ name: "lonely" });
    await settle(lonely.connect(join(dir, "missing.sock"), { timeoutMs: 100 }));
    server = await FakeQMPServer.listen(sockPath, { greet: false });
    const early = new QMPClient({ name: "early" });
    const connecting = settle(early.connect(sockPath, { timeoutMs: 1000 }));
    await server.waitForClient();
    server.dropClient(); // closes before the greeting
    expect(await connecting).toBeInstanceOf(QMPConnectError);
    await server.close();
    const { server: s2, client: c2 } = await setup();
    const listener = c2.listen();
    void c2.execute("never-answered").catch(() => {});
    await s2.nextCommand();
    s2.dropClient();
    await c2.closed;
    await settle(listener.get({ timeoutMs: 10 }));
    await new Promise((r) => setTimeout(r, 50)); // unhandled rejections are reported a tick late
    expect(unhandled).toEqual([]);
  } finally {
    process.off("unhandledRejection", collect);
  }
});

// --- real QEMU ---------------------------------------------------------------------------------

const QEMU = "/usr/bin/qemu-system-x86_64";

test("talks to a real QEMU 7.2+: version, query-status, CommandNotFound, quit", async (ctx) => {
  if (!existsSync(QEMU)) ctx.skip(`${QEMU} is not installed`);
  const socket = join(dir, "q.sock");
  let child: ChildProcess | undefined;
  let stderr = "";
  const real = new QMPClient({ name: "real-qemu" });
  try {
    child = spawn(
      QEMU,
      [
        "-machine",
        "none",
        "-nodefaults",
        "-display",
        "none",
        "-qmp",
        `unix:${socket},server=on,wait=off`,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    child.stderr?.on("data", (d) => {
      stderr += String(d);
    });
    const exited = new Promise<number | null>((resolve) => child?.on("exit", resolve));
    // The socket appears once QEMU is up: retry single attempts, bounded.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await real.connect(socket, { timeoutMs: 2000 });
        break;
      } catch (error) {
        if (!(error instanceof QMPConnectError) || Date.now() > deadline) {
          throw new Error(`${String(error)}; QEMU stderr: ${stderr}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect(real.version.qemu.major).toBeGreaterThanOrEqual(7);
    expect(real.capabilities).toEqual(["oob"]);
    const status = await real.execute<StatusInfo>("query-status");
    expect(typeof status.running).toBe("boolean");
    expect(typeof status.status).toBe("string");
    const error = await settle(real.execute("no-such-command-here"));
    expect(error).toBeInstanceOf(ExecuteError);
    expect((error as ExecuteError).errorClass).toBe("CommandNotFound");
    const shutdown = real.listen("SHUTDOWN");
    await real.execute("quit");
    await expect(shutdown.get({ timeoutMs: 5000 })).resolves.toMatchObject({ event: "SHUTDOWN" });
    await real.closed;
    expect(real.closeReason).toBe("QEMU closed the connection");
    expect(await exited).toBe(0);
  } finally {
    await real.disconnect();
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
    }
  }
}, 20_000);

// Unlike the fake server, this socket never writes anything at all.
test("a raw socket that accepts but never speaks also times out the greeting", async () => {
  const raw: Server = createServer(() => {});
  raw.listen(sockPath);
  await new Promise((r) => raw.once("listening", r));
  try {
    client = new QMPClient({ name: "source" });
    await expect(client.connect(sockPath, { timeoutMs: 100 })).rejects.toThrow(
      /source: connected to QMP socket .* but got no greeting: no QMP greeting within 100 ms/,
    );
  } finally {
    await new Promise((r) => raw.close(r));
  }
});
