// What a QEMU binary is and can do, asked of the binary itself once and cached per spec (and
// target, for a matrix name). Only command-line facts live here (version, target, accelerators,
// options); QMP-level features come from the schema of a running instance.

import { execa } from "execa";
import { PromiseCache } from "../util/promise-cache.ts";
import type { QemuArch } from "./arch.ts";
import { QemuResolveError, resolveQemuBinary } from "./matrix.ts";

export interface QemuBinaryInfo {
  /** What the user named: a matrix name ("11.1"), a path or a command. */
  spec: string;
  path: string;
  /** "7.2.22", from `-version`. */
  version: string;
  major: number;
  minor: number;
  micro: number;
  /** The target it emulates, from `query-target` (never from its name). */
  arch: QemuArch;
  /** `-accel help`: e.g. ["tcg", "kvm"]. */
  accels: string[];
  /** `-run-with exit-with-parent=on` (10.2+): QEMU exits when the process that started it dies. */
  exitWithParent: boolean;
}

/** Bad QEMU binary: missing, not executable, not QEMU, or not answering. */
export const QemuBinaryError = QemuResolveError;

const PROBE_TIMEOUT_MS = 15_000;
const cache = new PromiseCache<string, QemuBinaryInfo>();

/**
 * Probe a binary (matrix name, path or command name) once per spec and `arch`: its version and
 * target (checked to be QEMU by matrix.ts) and what its command line offers. `arch` picks a matrix
 * name's target (default x86_64); for a path or command the binary's own target is used, and a
 * given `arch` must match it (see resolveQemuBinary).
 */
export function probeQemuBinary(spec: string, arch?: QemuArch): Promise<QemuBinaryInfo> {
  // A failed probe is not kept: the user may fix the binary and retry in the same process.
  return cache.get(`${arch ?? ""}\0${spec}`, () => runProbe(spec, arch));
}

async function run(path: string, args: string[]): Promise<string> {
  const r = await execa(path, args, {
    timeout: PROBE_TIMEOUT_MS,
    reject: false,
    stdin: "ignore",
    all: true,
  });
  if (r.timedOut) {
    throw new QemuBinaryError(
      `${path} ${args.join(" ")} did not finish within ${PROBE_TIMEOUT_MS} ms: is it really QEMU?`,
      path,
    );
  }
  if (r.failed && r.exitCode === undefined) {
    throw new QemuBinaryError(`could not run ${path}: ${r.shortMessage}`, path);
  }
  return r.all ?? "";
}

async function runProbe(spec: string, wantArch: QemuArch | undefined): Promise<QemuBinaryInfo> {
  const { path, version, arch } = await resolveQemuBinary(spec, process.env, wantArch);
  const [major = 0, minor = 0, micro = 0] = version.split(".").map(Number);
  const [accelText, helpText] = await Promise.all([
    run(path, ["-accel", "help"]),
    run(path, ["-help"]),
  ]);
  const accels = accelText
    .split("\n")
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => /^[a-z][a-z0-9_-]*$/.test(l));
  return {
    spec,
    path,
    version,
    major,
    minor,
    micro,
    arch,
    accels,
    exitWithParent: /exit-with-parent/.test(helpText),
  };
}

/** "7.2" for 7.2.22: the label tests carry in their names. */
export function shortVersion(info: Pick<QemuBinaryInfo, "major" | "minor">): string {
  return `${info.major}.${info.minor}`;
}
