import { readFileSync, readlinkSync } from "node:fs";
import { chmod, stat, writeFile } from "node:fs/promises";
import { createConnection, type Socket } from "node:net";
import { basename, dirname, join } from "node:path";
import { execa } from "execa";
import { dir } from "tmp-promise";
import { describe, expect, test } from "vitest";
import { QEMU_ARCHES, type QemuArch, qemuSystemCommand } from "./arch.ts";
import { writeFakeQemu as writeFake } from "./fake-qemu.test-helpers.ts";
import {
  archesFromEnv,
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

const installed = await installedMatrix(process.env, QEMU_ARCHES);
const installedBy = new Map(installed.map((q) => [`${q.name}/${q.arch}`, q]));
const notInstalledReason = (name: MatrixName, arch: QemuArch) =>
  name === "7.2" && arch === "x86_64"
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
      await writeFake(fake, "9.2.1", "x86_64");
      await expectResolveError(resolveQemuBinary("7.2", s.env), /is QEMU 9\.2\.1; pass the path/);
      // The same fake is fine as a plain command: its name comes from its version.
      const r = await resolveQemuBinary(HOST_QEMU_COMMAND, s.env);
      expect(r).toEqual({
        spec: HOST_QEMU_COMMAND,
        path: fake,
        name: "9.2",
        version: "9.2.1",
        arch: "x86_64",
      });
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

  test.each(MATRIX_NAMES)(
    "matrix name %s missing on aarch64 names the target, the wrapper and the installer",
    async (name) => {
      const s = await scratchEnv();
      try {
        const esc = name.replace(".", "\\.");
        await expectResolveError(
          resolveQemuBinary(name, s.env, "aarch64"),
          new RegExp(
            `^QEMU ${esc} \\(aarch64\\) is not installed \\(no executable .*/matrix/${esc}/qemu-system-aarch64\\); run scripts/install-qemu-matrix ${esc}$`,
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
      await writeFake(matrixWrapperPath("11.1", "x86_64", s.env), "11.0.0", "x86_64");
      await expectResolveError(
        resolveQemuBinary("11.1", s.env),
        /reports QEMU 11\.0\.0; run scripts\/install-qemu-matrix 11\.1 to rebuild it/,
      );
    } finally {
      await s.done();
    }
  });

  test("a matrix wrapper is asked its target: one for another target is refused", async () => {
    const s = await scratchEnv();
    try {
      await writeFake(matrixWrapperPath("10.0", "aarch64", s.env), "10.0.2", "x86_64");
      await expectResolveError(
        resolveQemuBinary("10.0", s.env, "aarch64"),
        /^QEMU 10\.0 \(aarch64\): the matrix wrapper .*\/10\.0\/qemu-system-aarch64 emulates x86_64, not aarch64; run scripts\/install-qemu-matrix 10\.0 to rebuild it$/,
      );
    } finally {
      await s.done();
    }
  });

  test("a matrix name resolves per target: the same name, each target's wrapper", async () => {
    const s = await scratchEnv();
    try {
      for (const arch of QEMU_ARCHES) {
        await writeFake(matrixWrapperPath("10.0", arch, s.env), "10.0.2", arch);
      }
      const x86 = await resolveQemuBinary("10.0", s.env);
      const arm = await resolveQemuBinary("10.0", s.env, "aarch64");
      expect(x86).toEqual({
        spec: "10.0",
        path: matrixWrapperPath("10.0", "x86_64", s.env),
        name: "10.0",
        version: "10.0.2",
        arch: "x86_64",
      });
      expect(arm).toEqual({
        ...x86,
        path: matrixWrapperPath("10.0", "aarch64", s.env),
        arch: "aarch64",
      });
      expect(await resolveQemuBinary("10.0", s.env, "x86_64")).toEqual(x86);
      // 7.2 on x86_64 is the host's command on PATH, on aarch64 the matrix wrapper.
      await writeFake(join(s.root, "bin", HOST_QEMU_COMMAND), "7.2.22", "x86_64");
      await writeFake(matrixWrapperPath("7.2", "aarch64", s.env), "7.2.22", "aarch64");
      expect((await resolveQemuBinary("7.2", s.env)).path).toBe(
        join(s.root, "bin", HOST_QEMU_COMMAND),
      );
      expect(await resolveQemuBinary("7.2", s.env, "aarch64")).toMatchObject({
        path: matrixWrapperPath("7.2", "aarch64", s.env),
        arch: "aarch64",
      });
      // What is installed, per target; x86_64 only by default (as before aarch64 joined).
      expect((await installedMatrix(s.env)).map((q) => `${q.name}/${q.arch}`)).toEqual([
        "7.2/x86_64",
        "10.0/x86_64",
      ]);
      expect(
        (await installedMatrix(s.env, ["aarch64", "x86_64"])).map((q) => `${q.name}/${q.arch}`),
      ).toEqual(["7.2/x86_64", "10.0/x86_64", "7.2/aarch64", "10.0/aarch64"]);
    } finally {
      await s.done();
    }
  });

  test("a path of another target than asked for is refused; unasked, its own target is used", async () => {
    const s = await scratchEnv();
    try {
      const fake = join(s.root, "bin", "qemu-system-aarch64");
      await writeFake(fake, "11.1.3", "aarch64");
      expect((await resolveQemuBinary(fake, s.env)).arch).toBe("aarch64");
      await expectResolveError(
        resolveQemuBinary(fake, s.env, "x86_64"),
        /emulates aarch64, not x86_64; pass a qemu-system-x86_64$/,
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
    expect(matrixWrapperPath("10.0", "x86_64", { HOME: "/h" })).toBe(
      "/h/.cache/qemu-migtest/matrix/10.0/qemu-system-x86_64",
    );
    expect(matrixWrapperPath("7.2", "aarch64", { HOME: "/h" })).toBe(
      "/h/.cache/qemu-migtest/matrix/7.2/qemu-system-aarch64",
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

  test("default: every matrix name installed on any target, in matrix order", async () => {
    const names = MATRIX_NAMES.filter((n) => installed.some((q) => q.name === n));
    const expected = names.length > 0 ? names : [HOST_QEMU_COMMAND];
    expect(await binariesFromEnv({ ...process.env, QEMU_MIGTEST_BINARIES: "" })).toEqual(expected);
  });

  test("default with QEMU_MIGTEST_ARCHES: the names installed on those targets", async () => {
    const s = await scratchEnv();
    try {
      await writeFake(matrixWrapperPath("7.2", "aarch64", s.env), "7.2.22", "aarch64");
      await writeFake(matrixWrapperPath("11.1", "x86_64", s.env), "11.1.3", "x86_64");
      expect(await binariesFromEnv(s.env)).toEqual(["7.2", "11.1"]);
      expect(await binariesFromEnv({ ...s.env, QEMU_MIGTEST_ARCHES: "x86_64" })).toEqual(["11.1"]);
      expect(await binariesFromEnv({ ...s.env, QEMU_MIGTEST_ARCHES: "aarch64" })).toEqual(["7.2"]);
    } finally {
      await s.done();
    }
  });

  test("QEMU_MIGTEST_ARCHES: unset or blank is undefined, a list is sorted x86_64 first", () => {
    expect(archesFromEnv({})).toBeUndefined();
    expect(archesFromEnv({ QEMU_MIGTEST_ARCHES: " " })).toBeUndefined();
    expect(archesFromEnv({ QEMU_MIGTEST_ARCHES: "aarch64" })).toEqual(["aarch64"]);
    expect(archesFromEnv({ QEMU_MIGTEST_ARCHES: " aarch64, x86_64,aarch64 " })).toEqual([
      "x86_64",
      "aarch64",
    ]);
  });

  test("QEMU_MIGTEST_ARCHES: an unknown name is an error listing the valid ones", () => {
    for (const bad of ["arm64", "x86_64,ppc64", "amd64"]) {
      expect(() => archesFromEnv({ QEMU_MIGTEST_ARCHES: bad })).toThrow(QemuResolveError);
    }
    expect(() => archesFromEnv({ QEMU_MIGTEST_ARCHES: "x86_64,arm64,ppc64" })).toThrow(
      /^QEMU_MIGTEST_ARCHES="x86_64,arm64,ppc64": unknown architecture "arm64", "ppc64"; valid: x86_64, aarch64 \(QEMU's names, as in qemu-system-<arch>\)$/,
    );
    expect(() => archesFromEnv({ QEMU_MIGTEST_ARCHES: ",," })).toThrow(/names no architecture/);
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
/**
 * Connects to a unix socket, retrying while it is refused: QEMU binds the path before it listens,
 * so the path can exist a moment before a connection is accepted.
 */
async function connectUnix(socketPath: string, ms = 10_000): Promise<Socket> {
  const end = Date.now() + ms;
  for (;;) {
    const sock = createConnection(socketPath);
    try {
      await new Promise<void>((res, rej) => {
        sock.once("connect", res);
        sock.once("error", rej);
      });
      return sock;
    } catch (e) {
      sock.destroy();
      if ((e as NodeJS.ErrnoException).code !== "ECONNREFUSED" || Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function qmpSession(socketPath: string) {
  const sock = await connectUnix(socketPath);
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

const MATRIX_CELLS = QEMU_ARCHES.flatMap((arch) =>
  MATRIX_NAMES.map((name) => [name, arch] as [MatrixName, QemuArch]),
);

describe.each(MATRIX_CELLS)("matrix %s on %s", (name, arch) => {
  const q = installedBy.get(`${name}/${arch}`);
  const skip = q === undefined;
  const reason = skip ? ` (skipped: ${notInstalledReason(name, arch)})` : "";

  test.skipIf(skip)(`resolves by name to its own version and target${reason}`, async () => {
    const r = await resolveQemuBinary(name, process.env, arch);
    expect(r.spec).toBe(name);
    expect(r.name).toBe(name);
    expect(r.arch).toBe(arch);
    expect(r.version.startsWith(`${name}.`)).toBe(true);
    expect(r.path).toBe(
      name === "7.2" && arch === "x86_64" ? findHostPath : matrixWrapperPath(name, arch),
    );
    // Resolving the same binary by path labels it by its version, and finds the same target.
    const byPath = await resolveQemuBinary(r.path);
    expect(byPath).toEqual({ ...r, spec: r.path });
  });

  test.skipIf(skip)(
    `-machine help lists ${arch === "x86_64" ? "pc-q35" : "virt"}-${name}${reason}`,
    async () => {
      const r = await execa((q as ResolvedQemu).path, ["-machine", "help"], { timeout: 15_000 });
      const family = arch === "x86_64" ? "pc-q35" : "virt";
      expect(r.stdout).toMatch(new RegExp(`^${family}-${name.replace(".", "\\.")} `, "m"));
    },
  );

  test.skipIf(skip)(`exit codes and stderr pass through${reason}`, async () => {
    const r = await execa((q as ResolvedQemu).path, ["-machine", "no-such-machine"], {
      reject: false,
      timeout: 15_000,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/unsupported machine type|no-such-machine/);
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
      expect(basename(readlinkSync(`/proc/${pid}/exe`))).toMatch(
        new RegExp(`^${qemuSystemCommand(arch)}`),
      );
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
        expect(machines.map((m) => m.name)).toContain(
          `${arch === "x86_64" ? "pc-q35" : "virt"}-${name}`,
        );
        expect(await s.execute("query-target")).toEqual({ arch });
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

  test.skipIf(skip || arch !== "x86_64")(
    `boots a pc with its own SeaBIOS, HMP over stdin/stdout${skip ? reason : arch !== "x86_64" ? " (skipped: x86_64 only; the harness gives aarch64 its own -bios)" : ""}`,
    async () => {
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
    },
  );
  test.skipIf(skip || arch !== "aarch64")(
    `boots -M virt -cpu max under TCG, HMP over stdin/stdout${skip ? reason : arch !== "aarch64" ? " (skipped: aarch64 only)" : ""}`,
    async () => {
      const qemu = q as ResolvedQemu;
      // No firmware: the vCPU runs (and faults) on empty RAM, the machine still runs and answers.
      const r = await execa(
        qemu.path,
        ["-M", "virt", "-cpu", "max", "-accel", "tcg", "-display", "none", "-nodefaults"].concat([
          "-monitor",
          "stdio",
        ]),
        { input: "info status\ninfo version\nquit\n", timeout: 30_000, reject: false },
      );
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(/VM status: running/);
      expect(r.stdout).toContain(qemu.version);
    },
  );
});
