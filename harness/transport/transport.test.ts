// What each transport gives the destination and the source, from its declaration alone: the
// URI or channels of migrate-incoming and migrate, and whether the destination loads only after
// the source completed. No QEMU: the suites (file, fd, channels, tls) run the real thing.

import { describe, expect, test } from "vitest";
import { FDSET, migrationFilePath, TransportError, transportUris } from "./transport.ts";

const DIR = "/run/qmt/destination";

describe("transportUris", () => {
  test("tcp and unix listen where the source connects, at once", async () => {
    const tcp = await transportUris({ kind: "tcp" }, DIR);
    expect(tcp.incoming).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
    expect(tcp.outgoing).toBe(tcp.incoming);
    expect(tcp.incomingAfterOutgoing).toBeUndefined();
    expect(await transportUris({ kind: "unix" }, DIR)).toEqual({
      incoming: `unix:${DIR}/migration.sock`,
      outgoing: `unix:${DIR}/migration.sock`,
    });
  });

  test("exec writes through cat, marks the file whole, and reads it back after completion", async () => {
    expect(await transportUris({ kind: "exec" }, DIR)).toEqual({
      outgoing: `exec:cat > ${DIR}/migration.bin && touch ${DIR}/migration.bin.done`,
      incoming: `exec:cat ${DIR}/migration.bin`,
      incomingReady: `${DIR}/migration.bin.done`,
      incomingAfterOutgoing: true,
    });
  });

  test("file takes the same offset both ways, and a directory of its own", async () => {
    const t = { kind: "file", offset: 4096, directory: "/var/tmp/dio" } as const;
    expect(await transportUris(t, DIR)).toEqual({
      outgoing: "file:/var/tmp/dio/migration.bin,offset=4096",
      incoming: "file:/var/tmp/dio/migration.bin,offset=4096",
      incomingAfterOutgoing: true,
    });
    expect(migrationFilePath({ kind: "file" }, DIR)).toBe(`${DIR}/migration.bin`);
    // A bad offset goes to QEMU as written: refusing it is QEMU's job, and the test's to check.
    expect((await transportUris({ kind: "file", offset: "0x20M" }, DIR)).outgoing).toMatch(
      /,offset=0x20M$/,
    );
  });

  test("fdset: /dev/fdset out, fd:4 (fed by the harness) or /dev/fdset in", async () => {
    expect(await transportUris({ kind: "fdset" }, DIR)).toEqual({
      outgoing: `file:/dev/fdset/${FDSET.id}`,
      incoming: `fd:${FDSET.rawFd}`,
      incomingFed: true,
      incomingAfterOutgoing: true,
    });
    const both = await transportUris({ kind: "fdset", incoming: "fdset" }, DIR);
    expect(both.incoming).toBe(`file:/dev/fdset/${FDSET.id}`);
    expect(both.incomingFed).toBe(false);
    await expect(
      transportUris({ kind: "fdset", outgoing: "exec" }, DIR),
      "exec into the fdset file needs the file the pair opened",
    ).rejects.toThrow(TransportError);
    expect(
      (await transportUris({ kind: "fdset", outgoing: "exec" }, DIR, "/p/m.bin")).outgoing,
    ).toBe("exec:cat > /p/m.bin && touch /p/m.bin.done");
  });

  test("channels: the same address as a MigrationChannel list, no uri", async () => {
    const unix = await transportUris({ kind: "channels", address: "unix" }, DIR);
    const channels = [
      {
        "channel-type": "main",
        addr: { transport: "socket", type: "unix", path: `${DIR}/migration.sock` },
      },
    ];
    expect(unix.incomingArguments).toEqual({ channels });
    expect(unix.outgoingArguments).toEqual({ channels });
    const file = await transportUris({ kind: "channels", address: "file" }, DIR);
    expect(file.outgoingArguments?.channels?.[0]?.addr).toEqual({
      transport: "file",
      filename: `${DIR}/migration.bin`,
      offset: 0,
    });
    expect(file.incomingAfterOutgoing).toBe(true);
    const tcp = await transportUris({ kind: "channels" }, DIR);
    expect(tcp.outgoingArguments?.channels?.[0]?.addr).toMatchObject({
      transport: "socket",
      type: "inet",
      host: "127.0.0.1",
    });
  });

  test("channels given malformed on purpose: both uri and channels, or neither, on one command", async () => {
    const both = await transportUris(
      { kind: "channels", give: { command: "migrate", arguments: "uri-and-channels" } },
      DIR,
    );
    expect(Object.keys(both.outgoingArguments ?? {}).sort()).toEqual(["channels", "uri"]);
    expect(Object.keys(both.incomingArguments ?? {})).toEqual(["channels"]);
    const neither = await transportUris(
      { kind: "channels", give: { command: "migrate-incoming", arguments: "neither" } },
      DIR,
    );
    expect(neither.incomingArguments).toEqual({});
    expect(Object.keys(neither.outgoingArguments ?? {})).toEqual(["channels"]);
  });
});
