// The QEMU version matrix: which QEMU binaries a run uses, named by version, per target
// (x86_64, aarch64). On x86_64, "7.2" is the host's own qemu-system-x86_64 (Debian 12); every other
// matrix binary (10.0 and 11.1 on both targets, 7.2 on aarch64) is a wrapper
// matrix/<name>/qemu-system-<arch> that scripts/install-qemu-matrix puts in the cache. A spec is a
// matrix name, a path, or a command found on PATH; every resolved binary is asked its version and
// its target (query-target), nothing is assumed from its name.

import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { execa } from "execa";
import { PromiseCache } from "../util/promise-cache.ts";
import {
  isQemuArch,
  QEMU_ARCHES,
  type QemuArch,
  qemuSystemCommand,
  sortArches,
  supportedArchesText,
} from "./arch.ts";

export const MATRIX_NAMES = ["7.2", "10.0", "11.1"] as const;
export type MatrixName = (typeof MATRIX_NAMES)[number];

/** The host's QEMU command; matrix name "7.2" on x86_64 is this command when it really is 7.2. */
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
  /** The target it emulates, from `query-target` (not from its name). */
  arch: QemuArch;
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
const ARCH_TIMEOUT_MS = 15_000;
const INSTALL_HINT = "scripts/install-qemu-matrix";

export function isMatrixName(spec: string): spec is MatrixName {
  return (MATRIX_NAMES as readonly string[]).includes(spec);
}

/** Root of the installed matrix: one directory per name, each with a qemu-system-<arch> per target. */
export function matrixCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.QEMU_MIGTEST_CACHE || join(env.HOME || homedir(), ".cache", "qemu-migtest");
  return join(base, "matrix");
}

/**
 * The wrapper scripts/install-qemu-matrix installs for `name` on `arch`. (7.2 on x86_64 is the
 * host's own binary, not this path: see resolveQemuBinary.)
 */
export function matrixWrapperPath(
  name: MatrixName,
  arch: QemuArch = "x86_64",
  env: NodeJS.ProcessEnv = process.env,
): string {
  return join(matrixCacheDir(env), name, qemuSystemCommand(arch));
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
async function checkExecutable(path: string, spec: string, command: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(path)).isFile();
  } catch {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} does not exist; pass the path of a ${command} or a matrix name (${MATRIX_NAMES.join(", ")})`,
      spec,
    );
  }
  if (!isFile) {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} is not a file; pass the path of a ${command} binary`,
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
async function qemuVersionOf(
  path: string,
  spec: string = path,
  command = "qemu-system-x86_64",
): Promise<string> {
  const r = await execa(path, ["-version"], {
    timeout: VERSION_TIMEOUT_MS,
    reject: false,
    stdin: "ignore",
    all: true,
  });
  const output = (r.all ?? "").trim();
  if (r.timedOut) {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} -version did not finish within ${VERSION_TIMEOUT_MS / 1000} s; is it really ${command}?`,
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
      `QEMU binary "${spec}": ${path} -version printed nothing QEMU-like (exit code ${r.exitCode}, output ${shown}); expected "QEMU emulator version X.Y.Z", pass a ${command}`,
      spec,
    );
  }
  return m[1];
}

function majorMinor(version: string): string {
  return version.split(".").slice(0, 2).join(".");
}

/** query-target's `arch` per binary path, asked once (a failed probe is not kept). */
const targetCache = new PromiseCache<string, string>();

/**
 * The target a binary emulates, in QEMU's words: `query-target` over a QMP session on stdio of a
 * machine-less instance (`-machine none`). Cached per path, like binary.ts caches its probe.
 */
export function queryTargetArch(path: string, spec: string = path): Promise<string> {
  return targetCache.get(path, () => runQueryTarget(path, spec));
}

async function runQueryTarget(path: string, spec: string): Promise<string> {
  const args = ["-machine", "none", "-display", "none", "-nodefaults", "-qmp", "stdio"];
  const input = `${['{"execute":"qmp_capabilities"}', '{"execute":"query-target"}', '{"execute":"quit"}'].join("\n")}\n`;
  const r = await execa(path, args, { input, timeout: ARCH_TIMEOUT_MS, reject: false });
  const asked = `${path} ${args.join(" ")} (query-target)`;
  if (r.timedOut) {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${asked} did not answer within ${ARCH_TIMEOUT_MS / 1000} s, so its target is unknown`,
      spec,
    );
  }
  if (r.exitCode === undefined) {
    throw new QemuResolveError(
      `QEMU binary "${spec}": could not run ${asked}: ${r.shortMessage}`,
      spec,
    );
  }
  for (const line of (r.stdout ?? "").split("\n")) {
    const t = line.trim();
    if (!t.startsWith("{")) continue;
    try {
      const msg = JSON.parse(t) as { return?: { arch?: unknown } };
      if (typeof msg.return?.arch === "string") return msg.return.arch;
    } catch {
      // not a QMP line
    }
  }
  const said = (r.stderr || r.stdout || "").trim();
  throw new QemuResolveError(
    `QEMU binary "${spec}": ${asked} did not tell its target (exit code ${r.exitCode}, output ${said ? JSON.stringify(said.slice(0, 300)) : "(no output)"}); the harness asks every binary which target it emulates`,
    spec,
  );
}

/** The supported target of `path`; any other target is a QemuResolveError naming the supported ones. */
async function detectArch(path: string, spec: string): Promise<QemuArch> {
  const arch = await queryTargetArch(path, spec);
  if (!isQemuArch(arch)) {
    throw new QemuResolveError(
      `QEMU binary "${spec}": ${path} emulates ${arch}; the harness supports ${supportedArchesText()} (${QEMU_ARCHES.map(qemuSystemCommand).join(", ")})`,
      spec,
    );
  }
  return arch;
}

/** "QEMU 10.0" on x86_64, "QEMU 10.0 (aarch64)" elsewhere: keeps x86_64's messages as they were. */
function matrixLabel(name: MatrixName, arch: QemuArch): string {
  return arch === "x86_64" ? `QEMU ${name}` : `QEMU ${name} (${arch})`;
}

async function resolveMatrixName(
  name: MatrixName,
  env: NodeJS.ProcessEnv,
  arch: QemuArch = "x86_64",
): Promise<ResolvedQemu> {
  const label = matrixLabel(name, arch);
  if (name === "7.2" && arch === "x86_64") {
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
    const detected = await detectArch(path, name);
    if (detected !== arch) {
      throw new QemuResolveError(
        `QEMU 7.2 is the host's ${HOST_QEMU_COMMAND}, but ${path} emulates ${detected}; pass the path of an x86_64 7.2 build instead of "7.2"`,
        name,
      );
    }
    return { spec: name, path, name, version, arch };
  }
  const path = matrixWrapperPath(name, arch, env);
  const command = qemuSystemCommand(arch);
  if (!(await isExecutableFile(path))) {
    throw new QemuResolveError(
      `${label} is not installed (no executable ${path}); run ${INSTALL_HINT} ${name}`,
      name,
    );
  }
  let version: string;
  let detected: QemuArch;
  try {
    version = await qemuVersionOf(path, name, command);
    detected = await detectArch(path, name);
  } catch (e) {
    throw new QemuResolveError(
      `${(e as Error).message}; run ${INSTALL_HINT} ${name} to rebuild it`,
      name,
    );
  }
  if (majorMinor(version) !== name) {
    throw new QemuResolveError(
      `${label}: the matrix wrapper ${path} reports QEMU ${version}; run ${INSTALL_HINT} ${name} to rebuild it`,
      name,
    );
  }
  if (detected !== arch) {
    throw new QemuResolveError(
      `${label}: the matrix wrapper ${path} emulates ${detected}, not ${arch}; run ${INSTALL_HINT} ${name} to rebuild it`,
      name,
    );
  }
  return { spec: name, path, name, version, arch };
}

/**
 * Resolves a matrix name ("7.2", "10.0", "11.1"), a path (anything with a "/"), or a command name
 * looked up on PATH, and asks the binary its version and its target.
 * `arch` picks the target of a matrix name (default x86_64). For a path or a command the target is
 * the one the binary reports; given an `arch`, any other target is a QemuResolveError.
 */
export async function resolveQemuBinary(
  spec: string,
  env: NodeJS.ProcessEnv = process.env,
  arch?: QemuArch,
): Promise<ResolvedQemu> {
  const trimmed = spec.trim();
  const command = qemuSystemCommand(arch ?? "x86_64");
  if (!trimmed) {
    throw new QemuResolveError(
      `empty QEMU binary spec; use a matrix name (${MATRIX_NAMES.join(", ")}), a path or a command name`,
      spec,
    );
  }
  if (isMatrixName(trimmed)) return resolveMatrixName(trimmed, env, arch);
  if (/^\d+\.\d+$/.test(trimmed)) {
    throw new QemuResolveError(
      `"${trimmed}" is not a matrix name (${MATRIX_NAMES.join(", ")}); pass the path of a QEMU ${trimmed} ${command} instead`,
      trimmed,
    );
  }

  let path: string;
  if (trimmed.includes("/")) {
    path = resolve(trimmed);
    await checkExecutable(path, trimmed, command);
  } else {
    const found = await findOnPath(trimmed, env);
    if (!found) {
      const pkg = arch === "aarch64" ? "qemu-system-arm" : "qemu-system-x86";
      throw new QemuResolveError(
        `QEMU binary "${trimmed}" not found on PATH; install ${pkg} (apt-get install ${pkg}) or pass a path`,
        trimmed,
      );
    }
    path = found;
  }
  const version = await qemuVersionOf(path, trimmed, command);
  const detected = await detectArch(path, trimmed);
  if (arch !== undefined && detected !== arch) {
    throw new QemuResolveError(
      `QEMU binary "${trimmed}": ${path} emulates ${detected}, not ${arch}; pass a ${command}`,
      trimmed,
    );
  }
  return { spec: trimmed, path, name: majorMinor(version), version, arch: detected };
}

/**
 * The matrix binaries usable right now on `arches` (default: x86_64 only, as before aarch64 joined
 * the matrix), resolved, ordered by target then name (7.2 on x86_64 only when the host's QEMU is 7.2).
 */
export async function installedMatrix(
  env: NodeJS.ProcessEnv = process.env,
  arches: readonly QemuArch[] = ["x86_64"],
): Promise<ResolvedQemu[]> {
  const wanted = sortArches(arches).flatMap((arch) => MATRIX_NAMES.map((name) => ({ name, arch })));
  const results = await Promise.allSettled(
    wanted.map(({ name, arch }) => resolveMatrixName(name, env, arch)),
  );
  return results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
}

/**
 * QEMU_MIGTEST_ARCHES: the comma list of targets a run covers (x86_64, aarch64), in QEMU_ARCHES
 * order; undefined when unset or blank (then: every target with an installed matrix binary). An
 * unknown name is a QemuResolveError listing the valid ones.
 */
export function archesFromEnv(env: NodeJS.ProcessEnv = process.env): QemuArch[] | undefined {
  const raw = env.QEMU_MIGTEST_ARCHES;
  if (raw === undefined || raw.trim() === "") return undefined;
  const names = parseSpecList(raw);
  if (names.length === 0) {
    throw new QemuResolveError(
      `QEMU_MIGTEST_ARCHES=${JSON.stringify(raw)} names no architecture; give a comma list of ${QEMU_ARCHES.join(", ")} or unset it`,
      raw,
    );
  }
  const unknown = names.filter((n) => !isQemuArch(n));
  if (unknown.length > 0) {
    throw new QemuResolveError(
      `QEMU_MIGTEST_ARCHES=${JSON.stringify(raw)}: unknown architecture ${unknown.map((u) => JSON.stringify(u)).join(", ")}; valid: ${QEMU_ARCHES.join(", ")} (QEMU's names, as in qemu-system-<arch>)`,
      raw,
    );
  }
  return sortArches(names as QemuArch[]);
}

/**
 * The targets a run covers: QEMU_MIGTEST_ARCHES when set, else every target with at least one
 * installed matrix binary (empty when none is installed: then no target is filtered out).
 * `installedAll`: installedMatrix(env, QEMU_ARCHES), when the caller has it already.
 */
export async function selectedArches(
  env: NodeJS.ProcessEnv = process.env,
  installedAll?: readonly ResolvedQemu[],
): Promise<{ arches: QemuArch[]; explicit: boolean }> {
  const explicit = archesFromEnv(env);
  if (explicit) return { arches: explicit, explicit: true };
  const installed = installedAll ?? (await installedMatrix(env, QEMU_ARCHES));
  return { arches: sortArches(installed.map((q) => q.arch)), explicit: false };
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
 * else every matrix name installed on at least one of the run's targets (selectedArches), else
 * the host's qemu-system-x86_64. `installedAll`: installedMatrix(env, QEMU_ARCHES), when the
 * caller has it already.
 */
export async function binariesFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  installedAll?: readonly ResolvedQemu[],
): Promise<string[]> {
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
  const arches = archesFromEnv(env) ?? QEMU_ARCHES;
  const installed = installedAll
    ? installedAll.filter((q) => arches.includes(q.arch))
    : await installedMatrix(env, arches);
  const names = MATRIX_NAMES.filter((n) => installed.some((q) => q.name === n));
  return names.length > 0 ? names : [HOST_QEMU_COMMAND];
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
