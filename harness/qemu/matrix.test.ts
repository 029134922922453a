import { readFileSync, readlinkSync } from "node:fs";
import { chmod, stat, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { basename, dirname, join } from "node:path";
import { execa } from "execa";
import { dir } from "tmp-promise";
import { describe, expect, test } from "vitest";
import {
  binariesFromEnv,
  crossVersionFromEnv,
  findOnPath,
  HOST_QEMU_COMMAND,
  installedMatrix,
  MATRIX_NAMES,
  type MatrixName,
  matrixCacheDir,
  matrixWrapperPath,
  parseSpecList,
  QemuResolveError,
  type ResolvedQemu,
  resolveQemuBinary,
} from "./matrix.ts";

const installed = await installedMatrix();
const installedByName = new Map(installed.map((q) => [q.name, q]));
const notInstalledReason = (name: MatrixName) =>
  name === "7.2"
    ? "host qemu-system-x86_64 is not 7.2 or missing"
    : `not installed: run scripts/install-qemu-matrix ${name}`;

/** A scratch cache and a PATH with no QEMU on it, so resolution cannot find the real ones. */
async function scratchEnv(): Promise<{
  env: NodeJS.ProcessEnv;
  root: string;
  done: () => Promise<void>;
}> {
  const d = await dir({ unsafeCleanup: true, prefix: "qm-test-" });
  await execa("mkdir", ["-p", join(d.path, "bin")]);
  return {
    env: { HOME: d.path, QEMU_MIGTEST_CACHE: join(d.path, "cache"), PATH: join(d.path, "bin") },
    root: d.path,
    done: d.cleanup,
  };
}

async function expectResolveError(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(QemuResolveError);
  expect((e as Error).message).toMatch(pattern);
}

describe("spec resolution errors", () => {
  test("/bin/true is rejected: -version printed nothing QEMU-like", async () => {
    await expectResolveError(
      resolveQemuBinary("/bin/true"),
      /QEMU binary "\/bin\/true": \/bin\/true -version printed nothing QEMU-like \(exit code 0, output \(no output\)\)/,
    );
  });

  test("a script printing something else is rejected and its output quoted", async () => {
    const s = await scratchEnv();
    try {
      const fake = join(s.root, "bin", "fake-qemu");
      await writeFile(fake, "#!/bin/sh\necho 'hello from not-qemu'\nexit 3\n");
      await chmod(fake, 0o755);
      await expectResolveError(
        resolveQemuBinary(fake),
        /printed nothing QEMU-like \(exit code 3, output "hello from not-qemu"\)/,
      );
    } finally {
      await s.done();
    }
  });

  test("a missing path says it does not exist", async () => {
    await expectResolveError(
      resolveQemuBinary("/nonexistent/qemu-system-x86_64"),
      /\/nonexistent\/qemu-system-x86_64 does not exist; pass the path of a qemu-system-x86_64/,
    );
  });

  test("a non-executable file says chmod +x", async () => {
    const s = await scratchEnv();
    try {
      const f = join(s.root, "qemu-system-x86_64");
      await writeFile(f, "#!/bin/sh\n");
      await chmod(f, 0o644);
      await expectResolveError(resolveQemuBinary(f), /is not executable; chmod \+x it/);
    } finally {
      await s.done();
    }
  });

  test("a directory is not a binary", async () => {
    await expectResolveError(resolveQemuBinary("/tmp"), /\/tmp is not a file/);
  });

  test("a command not on PATH says how to install it", async () => {
    const s = await scratchEnv();
    try {
      await expectResolveError(
        resolveQemuBinary(HOST_QEMU_COMMAND, s.env),
        /"qemu-system-x86_64" not found on PATH; install qemu-system-x86 \(apt-get install qemu-system-x86\) or pass a path/,
      );
    } finally {
      await s.done();
    }
  });

  test("7.2 without a host QEMU on PATH says to install qemu-system-x86", async () => {
    const s = await scratchEnv();
    try {
      await expectResolveError(
        resolveQemuBinary("7.2", s.env),
        /not found on PATH; install qemu-system-x86 .* or pass a path/,
      );
    } finally {
      await s.done();
    }
  });

  test("7.2 is detected, not assumed: a PATH QEMU of another version is refused", async () => {
    const s = await scratchEnv();
    try {
      const fake = join(s.root, "bin", HOST_QEMU_COMMAND);
      await writeFile(fake, "#!/bin/sh\necho 'QEMU emulator version 9.2.1 (fake)'\n");
      await chmod(fake, 0o755);
      await expectResolveError(resolveQemuBinary("7.2", s.env), /is QEMU 9\.2\.1; pass the path/);
      // The same fake is fine as a plain command: its name comes from its version.
      const r = await resolveQemuBinary(HOST_QEMU_COMMAND, s.env);
      expect(r).toEqual({ spec: HOST_QEMU_COMMAND, path: fake, name: "9.2", version: "9.2.1" });
    } finally {
      await s.done();
    }
  });

  test.each(["10.0", "11.1"] as const)(
    "matrix name %s missing from the cache says to run the installer",
    async (name) => {
      const s = await scratchEnv();
      try {
        await expectResolveError(
          resolveQemuBinary(name, s.env),
          new RegExp(
            `QEMU ${name.replace(".", "\\.")} is not installed .*; run scripts/install-qemu-matrix ${name.replace(".", "\\.")}$`,
          ),
        );
      } finally {
        await s.done();
      }
    },
  );

  test("a cached wrapper reporting the wrong version is refused with the rebuild hint", async () => {
    const s = await scratchEnv();
    try {
      const w = matrixWrapperPath("11.1", s.env);
      await execa("mkdir", ["-p", dirname(w)]);
      await writeFile(w, "#!/bin/sh\necho 'QEMU emulator version 11.0.0'\n");
      await chmod(w, 0o755);
      await expectResolveError(
        resolveQemuBinary("11.1", s.env),
        /reports QEMU 11\.0\.0; run scripts\/install-qemu-matrix 11\.1 to rebuild it/,
      );
    } finally {
      await s.done();
    }
  });

  test("a version that is not a matrix name says so", async () => {
    await expectResolveError(
      resolveQemuBinary("12.0"),
      /"12\.0" is not a matrix name \(7\.2, 10\.0, 11\.1\); pass the path/,
    );
  });

  test("an empty spec is refused", async () => {
    await expectResolveError(resolveQemuBinary("  "), /empty QEMU binary spec/);
  });
});

describe("environment selection", () => {
  test("matrixCacheDir follows QEMU_MIGTEST_CACHE, else HOME", () => {
    expect(matrixCacheDir({ QEMU_MIGTEST_CACHE: "/x/c" })).toBe("/x/c/matrix");
    expect(matrixCacheDir({ HOME: "/home/u" })).toBe("/home/u/.cache/qemu-migtest/matrix");
    expect(matrixWrapperPath("10.0", { HOME: "/h" })).toBe(
      "/h/.cache/qemu-migtest/matrix/10.0/qemu-system-x86_64",
    );
  });

  test("parseSpecList trims and drops blanks", () => {
    expect(parseSpecList(" 7.2, 11.1 ,,/opt/q/qemu-system-x86_64,")).toEqual([
      "7.2",
      "11.1",
      "/opt/q/qemu-system-x86_64",
    ]);
  });

  test("QEMU_MIGTEST_BINARIES is taken as given, duplicates dropped", async () => {
    expect(await binariesFromEnv({ QEMU_MIGTEST_BINARIES: "11.1,7.2,11.1" })).toEqual([
      "11.1",
      "7.2",
    ]);
  });

  test("QEMU_MIGTEST_BINARIES of commas only is an error", async () => {
    await expectResolveError(binariesFromEnv({ QEMU_MIGTEST_BINARIES: " , ," }), /names no binary/);
  });

  test("default with nothing installed: the PATH qemu", async () => {
    const s = await scratchEnv();
    try {
      expect(await binariesFromEnv(s.env)).toEqual([HOST_QEMU_COMMAND]);
    } finally {
      await s.done();
    }
  });

  test("default: every installed matrix name", async () => {
    const expected = installed.length > 0 ? installed.map((q) => q.name) : [HOST_QEMU_COMMAND];
    expect(await binariesFromEnv({ ...process.env, QEMU_MIGTEST_BINARIES: "" })).toEqual(expected);
  });

  test("crossVersionFromEnv: unset, one side, both sides", () => {
    expect(crossVersionFromEnv({})).toBeUndefined();
    expect(crossVersionFromEnv({ QTEST_QEMU_BINARY: "/a/qemu" })).toBeUndefined();
    expect(
      crossVersionFromEnv({ QTEST_QEMU_BINARY_SRC: "10.0", QTEST_QEMU_BINARY: "/a/qemu" }),
    ).toEqual({ src: "10.0", dst: "/a/qemu" });
    expect(crossVersionFromEnv({ QTEST_QEMU_BINARY_DST: "11.1" })).toEqual({
      src: HOST_QEMU_COMMAND,
      dst: "11.1",
    });
    expect(
      crossVersionFromEnv({ QTEST_QEMU_BINARY_SRC: "7.2", QTEST_QEMU_BINARY_DST: "11.1" }),
    ).toEqual({ src: "7.2", dst: "11.1" });
  });
});

// --- real binaries -------------------------------------------------------------------------

/** Minimal QMP exchange, enough to prove a session works through the wrapper. */
async function qmpSession(socketPath: string) {
  const sock = createConnection(socketPath);
  await new Promise<void>((res, rej) => {
    sock.once("connect", res);
    sock.once("error", rej);
  });
  let buf = "";
  const waiters: Array<(msg: Record<string, unknown>) => void> = [];
  const queue: Record<string, unknown>[] = [];
  sock.on("data", (d) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if ("event" in msg) continue;
      const w = waiters.shift();
      if (w) w(msg);
      else queue.push(msg);
    }
  });
  const next = () =>
    new Promise<Record<string, unknown>>((res, rej) => {
      const q = queue.shift();
      if (q) return res(q);
      const t = setTimeout(() => rej(new Error("QMP reply timeout")), 10_000);
      waiters.push((m) => {
        clearTimeout(t);
        res(m);
      });
    });
  const greeting = await next();
  const execute = async (command: string, args?: Record<string, unknown>) => {
    sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    const r = await next();
    if ("error" in r) throw new Error(`${command}: ${JSON.stringify(r.error)}`);
    return r.return;
  };
  await execute("qmp_capabilities");
  return { greeting, execute, close: () => sock.destroy() };
}

async function waitForPath(path: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await stat(path);
      return;
    } catch {
      if (Date.now() > end) throw new Error(`${path} did not appear within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** The SeaBIOS image the binary is supposed to load. */
function expectedBios(q: ResolvedQemu): string {
  return q.name === "7.2" && q.path === findHostPath
    ? "/usr/share/seabios/bios-256k.bin"
    : join(dirname(q.path), "root/usr/share/seabios/bios-256k.bin");
}
const findHostPath = await findOnPath(HOST_QEMU_COMMAND);

describe.each(MATRIX_NAMES)("matrix %s", (name) => {
  const q = installedByName.get(name);
  const skip = q === undefined;
  const reason = skip ? ` (skipped: ${notInstalledReason(name)})` : "";

  test.skipIf(skip)(`resolves by name to its own version${reason}`, async () => {
    const r = await resolveQemuBinary(name);
    expect(r.spec).toBe(name);
    expect(r.name).toBe(name);
    expect(r.version.startsWith(`${name}.`)).toBe(true);
    expect(r.path).toBe(name === "7.2" ? findHostPath : matrixWrapperPath(name));
    // Resolving the same binary by path labels it by its version.
    const byPath = await resolveQemuBinary(r.path);
    expect(byPath).toEqual({ ...r, spec: r.path });
  });

  test.skipIf(skip)(`QMP works, schema and machine types fit the version${reason}`, async () => {
    const qemu = q as ResolvedQemu;
    const d = await dir({ unsafeCleanup: true, prefix: "qm-" });
    const sockPath = join(d.path, "qmp.sock");
    // Spaces and commas in arguments must reach QEMU intact (",," is QEMU's escaped comma).
    const child = execa(
      qemu.path,
      [
        "-machine",
        "none",
        "-display",
        "none",
        "-name",
        "a b,,c",
        "-qmp",
        `unix:${sockPath},server=on,wait=off`,
      ],
      { reject: false, all: true },
    );
    try {
      await waitForPath(sockPath, 15_000);
      const pid = child.pid as number;
      // Every wrapper step exec()s: the PID we started is QEMU itself.
      expect(basename(readlinkSync(`/proc/${pid}/exe`))).toMatch(/^qemu-system-x86_64/);
      const s = await qmpSession(sockPath);
      try {
        const greetingVersion = (s.greeting.QMP as { version: { qemu: Record<string, number> } })
          .version.qemu;
        expect(`${greetingVersion.major}.${greetingVersion.minor}.${greetingVersion.micro}`).toBe(
          qemu.version,
        );
        expect(await s.execute("query-name")).toEqual({ name: "a b,c" });
        const schema = (await s.execute("query-qmp-schema")) as Array<{
          name: string;
          "meta-type": string;
          members?: Array<{ name: string }>;
        }>;
        const cmd = schema.find((e) => e.name === "query-migrate") as unknown as {
          "ret-type": string;
        };
        const info = schema.find((e) => e.name === cmd["ret-type"]);
        const members = (info?.members ?? []).map((m) => m.name);
        expect(members).toContain("status");
        // Top-level `remaining` is new in 11.1.
        expect(members.includes("remaining")).toBe(name === "11.1");
        const machines = (await s.execute("query-machines")) as Array<{ name: string }>;
        expect(machines.map((m) => m.name)).toContain(`pc-q35-${name}`);
      } finally {
        s.close();
      }
      // SIGTERM to the PID we hold ends QEMU, which says so.
      process.kill(pid, "SIGTERM");
      const r = await child;
      expect(r.all).toMatch(/terminating on signal 15/);
      expect(r.exitCode).toBe(0);
    } finally {
      if (child.exitCode === null && child.pid) {
        try {
          process.kill(child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      await child;
      await d.cleanup();
    }
  });

  test.skipIf(skip)(`-machine help lists pc-q35-${name}${reason}`, async () => {
    const r = await execa((q as ResolvedQemu).path, ["-machine", "help"], { timeout: 15_000 });
    expect(r.stdout).toMatch(new RegExp(`^pc-q35-${name.replace(".", "\\.")} `, "m"));
  });

  test.skipIf(skip)(`exit codes and stderr pass through${reason}`, async () => {
    const r = await execa((q as ResolvedQemu).path, ["-machine", "no-such-machine"], {
      reject: false,
      timeout: 15_000,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/unsupported machine type|no-such-machine/);
  });

  test.skipIf(skip)(`boots a pc with its own SeaBIOS, HMP over stdin/stdout${reason}`, async () => {
    const qemu = q as ResolvedQemu;
    const d = await dir({ unsafeCleanup: true, prefix: "qm-" });
    try {
      const dump = join(d.path, "bios.bin");
      const r = await execa(
        qemu.path,
        [
          "-machine",
          "pc",
          "-accel",
          "tcg",
          "-display",
          "none",
          "-nodefaults",
          "-S",
          "-serial",
          `file:${join(d.path, "serial.log")}`,
          "-monitor",
          "stdio",
        ],
        {
          input: `pmemsave 0xfffc0000 0x40000 "${dump}"\ninfo version\nquit\n`,
          timeout: 30_000,
          reject: false,
        },
      );
      expect(r.stderr).not.toMatch(/could not load/i);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toContain(qemu.version);
      // A non-relocatable build silently loads the host's 7.2 BIOS; the ROM must be its own.
      expect(readFileSync(dump).equals(readFileSync(expectedBios(qemu)))).toBe(true);
    } finally {
      await d.cleanup();
    }
  });
});
