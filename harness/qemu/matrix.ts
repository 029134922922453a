// The QEMU version matrix: which qemu-system-x86_64 binaries a run uses, named by version.
// "7.2" is the host's own QEMU (Debian 12); 10.0 and 11.1 are wrappers that
// scripts/install-qemu-matrix puts in the cache. A spec is a matrix name, a path, or a command
// found on PATH; every resolved binary is asked its version, nothing is assumed from its name.

import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { execa } from "execa";

export const MATRIX_NAMES = ["7.2", "10.0", "11.1"] as const;
export type MatrixName = (typeof MATRIX_NAMES)[number];

/** The host's QEMU command; matrix name "7.2" is this command when it really is 7.2. */
export const HOST_QEMU_COMMAND = "qemu-system-x86_64";

export interface ResolvedQemu {
  /** What was asked for: a matrix name, a path or a command name. */
  spec: string;
  /** Absolute path of the binary (or matrix wrapper) to execute. */
  path: string;
  /** The matrix name, or "major.minor" of the version for any other binary. */
  name: string;
  /** "7.2.22", from `-version`. */
  version: string;
}

export class QemuResolveError extends Error {
  override name = "QemuResolveError";
  constructor(
    message: string,
    readonly spec: string,
  ) {
    super(message);
  }
}

const VERSION_TIMEOUT_MS = 15_000;
const INSTALL_HINT = "scripts/install-qemu-matrix";

function isMatrixName(spec: string): spec is MatrixName {
  return (MATRIX_NAMES as readonly string[]).includes(spec);
}

/** Root of the installed matrix: one directory per name, each with a qemu-system-x86_64. */
export function matrixCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.QEMU_MIGTEST_CACHE || join(env.HOME || homedir(), ".cache", "qemu-migtest");
  return join(base, "matrix");
}

export function matrixWrapperPath(name: MatrixName, env: NodeJS.ProcessEnv = process.env): string {
  return join(matrixCacheDir(env), name, HOST_QEMU_COMMAND);
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    if (!(await stat(path)).isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `command` on PATH, like execvp would pick. */
export async function findOnPath(
  command: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = resolve(dir, command);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/** Checks that `path` exists, is a file and is executable; the error says which and what to do. */
async function checkExecutable(path: string, spec: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(path)).isFile();
  } catch {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} does not exist; pass the path of a qemu-system-x86_64 or a matrix name (${MATRIX_NAMES.join(", ")})`,
      spec,
    );
  }
  if (!isFile) {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} is not a file; pass the path of a qemu-system-x86_64 binary`,
      spec,
    );
  }
  try {
    await access(path, constants.X_OK);
  } catch {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} is not executable; chmod +x it or pass another binary`,
      spec,
    );
  }
}

/** Runs `path -version` (bounded) and returns "major.minor.micro". */
async function qemuVersionOf(path: string, spec: string = path): Promise<string> {
  const r = await execa(path, ["-version"], {
    timeout: VERSION_TIMEOUT_MS,
    reject: false,
    stdin: "ignore",
    all: true,
  });
  const output = (r.all ?? "").trim();
  if (r.timedOut) {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} -version did not finish within ${VERSION_TIMEOUT_MS / 1000} s; is it really qemu-system-x86_64?`,
      spec,
    );
  }
  if (r.exitCode === undefined) {
    throw new QemuResolveError(
      `QEMU binary "${spec}": could not run ${path}: ${r.shortMessage}`,
      spec,
    );
  }
  const m = /^QEMU emulator version (\d+\.\d+\.\d+)/m.exec(output);
  if (!m?.[1]) {
    const shown = output ? JSON.stringify(output.slice(0, 300)) : "(no output)";
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} -version printed nothing QEMU-like (exit code ${r.exitCode}, output ${shown}); expected "QEMU emulator version X.Y.Z", pass a qemu-system-x86_64`,
      spec,
    );
  }
  return m[1];
}

function majorMinor(version: string): string {
  return version.split(".").slice(0, 2).join(".");
}

async function resolveMatrixName(name: MatrixName, env: NodeJS.ProcessEnv): Promise<ResolvedQemu> {
  if (name === "7.2") {
    const path = await findOnPath(HOST_QEMU_COMMAND, env);
    if (!path) {
      throw new QemuResolveError(
        `QEMU 7.2 is the host's ${HOST_QEMU_COMMAND}, which was not found on PATH; install qemu-system-x86 (apt-get install qemu-system-x86 on Debian 12) or pass a path`,
        name,
      );
    }
    const version = await qemuVersionOf(path, name);
    if (majorMinor(version) !== name) {
      throw new QemuResolveError(
        `QEMU 7.2 is the host's ${HOST_QEMU_COMMAND}, but ${path} is QEMU ${version}; pass the path of a 7.2 build instead of "7.2"`,
        name,
      );
    }
    return { spec: name, path, name, version };
  }
  const path = matrixWrapperPath(name, env);
  if (!(await isExecutableFile(path))) {
    throw new QemuResolveError(
      `QEMU ${name} is not installed (no executable ${path}); run ${INSTALL_HINT} ${name}`,
      name,
    );
  }
  let version: string;
  try {
    version = await qemuVersionOf(path, name);
  } catch (e) {
    throw new QemuResolveError(
      `${(e as Error).message}; run ${INSTALL_HINT} ${name} to rebuild it`,
      name,
    );
  }
  if (majorMinor(version) !== name) {
    throw new QemuResolveError(
      `QEMU ${name}: the matrix wrapper ${path} reports QEMU ${version}; run ${INSTALL_HINT} ${name} to rebuild it`,
      name,
    );
  }
  return { spec: name, path, name, version };
}

/**
 * Resolves a matrix name ("7.2", "10.0", "11.1"), a path (anything with a "/"), or a command name
 * looked up on PATH, and asks the binary its version.
 */
export async function resolveQemuBinary(
  spec: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ResolvedQemu> {
  const trimmed = spec.trim();
  if (!trimmed) {
    throw new QemuResolveError(
      `empty QEMU binary spec; use a matrix name (${MATRIX_NAMES.join(", ")}), a path or a command name`,
      spec,
    );
  }
  if (isMatrixName(trimmed)) return resolveMatrixName(trimmed, env);
  if (/^\d+\.\d+$/.test(trimmed)) {
    throw new QemuResolveError(
      `"${trimmed}" is not a matrix name (${MATRIX_NAMES.join(", ")}); pass the path of a QEMU ${trimmed} qemu-system-x86_64 instead`,
      trimmed,
    );
  }

  let path: string;
  if (trimmed.includes("/")) {
    path = resolve(trimmed);
    await checkExecutable(path, trimmed);
  } else {
    const found = await findOnPath(trimmed, env);
    if (!found) {
      throw new QemuResolveError(
        `QEMU binary "${trimmed}" not found on PATH; install qemu-system-x86 (apt-get install qemu-system-x86) or pass a path`,
        trimmed,
      );
    }
    path = found;
  }
  const version = await qemuVersionOf(path, trimmed);
  return { spec: trimmed, path, name: majorMinor(version), version };
}

/** The matrix names usable right now, resolved (7.2 only when the host's QEMU is 7.2). */
export async function installedMatrix(
  env: NodeJS.ProcessEnv = process.env,
): Promise<ResolvedQemu[]> {
  const results = await Promise.allSettled(MATRIX_NAMES.map((n) => resolveMatrixName(n, env)));
  return results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
}

/** Splits a comma list of specs; blanks between commas are ignored. */
export function parseSpecList(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * The specs a run covers: QEMU_MIGTEST_BINARIES (comma list of matrix names, paths, commands),
 * else every installed matrix name, else the host's qemu-system-x86_64.
 */
export async function binariesFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const raw = env.QEMU_MIGTEST_BINARIES;
  if (raw !== undefined && raw.trim() !== "") {
    const specs = parseSpecList(raw);
    if (specs.length === 0) {
      throw new QemuResolveError(
        `QEMU_MIGTEST_BINARIES=${JSON.stringify(raw)} names no binary; give a comma list such as "7.2,11.1" or unset it`,
        raw,
      );
    }
    return [...new Set(specs)];
  }
  const installed = await installedMatrix(env);
  return installed.length > 0 ? installed.map((q) => q.name) : [HOST_QEMU_COMMAND];
}

export interface CrossVersionSpecs {
  src: string;
  dst: string;
}

/**
 * QEMU's own cross-version selection (tests/qtest/migration): QTEST_QEMU_BINARY_SRC or _DST
 * replaces one side, the other side is QTEST_QEMU_BINARY (here: the host's QEMU when unset).
 * Unlike qtest, both may be set. Undefined when neither is set.
 */
export function crossVersionFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): CrossVersionSpecs | undefined {
  const src = env.QTEST_QEMU_BINARY_SRC?.trim();
  const dst = env.QTEST_QEMU_BINARY_DST?.trim();
  if (!src && !dst) return undefined;
  const fallback = env.QTEST_QEMU_BINARY?.trim() || HOST_QEMU_COMMAND;
  return { src: src || fallback, dst: dst || fallback };
}
