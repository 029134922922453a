// What a QEMU binary is and can do, asked of the binary itself once and cached per path.
// Only command-line facts live here (version, accelerators, options); QMP-level features come
// from the schema of a running instance.

import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join } from "node:path";
import { execa } from "execa";

export interface QemuBinaryInfo {
  path: string;
  /** "7.2.22", from `-version`. */
  version: string;
  major: number;
  minor: number;
  micro: number;
  /** The first line of `-version`, e.g. "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)". */
  banner: string;
  /** `-accel help`: e.g. ["tcg", "kvm"]. */
  accels: string[];
  /** `-run-with exit-with-parent=on` (10.2+): QEMU exits when the process that started it dies. */
  exitWithParent: boolean;
}

export class QemuBinaryError extends Error {
  override name = "QemuBinaryError";
}

const PROBE_TIMEOUT_MS = 15_000;
const cache = new Map<string, Promise<QemuBinaryInfo>>();

/** Find a command on PATH, or return an absolute/relative path as given. */
export function locateBinary(spec: string, env: NodeJS.ProcessEnv = process.env): string {
  if (spec.includes("/")) {
    const path = isAbsolute(spec) ? spec : join(process.cwd(), spec);
    checkExecutable(path, spec);
    return path;
  }
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, spec);
    try {
      if (statSync(candidate).isFile()) {
        checkExecutable(candidate, spec);
        return candidate;
      }
    } catch {
      // not in this PATH entry
    }
  }
  throw new QemuBinaryError(
    `QEMU binary "${spec}" was not found on PATH; install it (apt-get install qemu-system-x86) or give a path to a qemu-system-x86_64`,
  );
}

function checkExecutable(path: string, spec: string): void {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    throw new QemuBinaryError(
      `QEMU binary "${spec}" does not exist (${path}); give the path of a qemu-system-x86_64`,
    );
  }
  if (!isFile) throw new QemuBinaryError(`QEMU binary "${spec}" is not a file (${path})`);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new QemuBinaryError(
      `QEMU binary "${spec}" is not executable (${path}); chmod +x it or give another binary`,
    );
  }
}

/** Probe a binary (path or command name), once per resolved path. */
export function probeQemuBinary(spec: string): Promise<QemuBinaryInfo> {
  const path = locateBinary(spec);
  let probe = cache.get(path);
  if (!probe) {
    probe = runProbe(path);
    cache.set(path, probe);
    // A failed probe is not cached: the user may fix the binary and retry in the same process.
    probe.catch(() => cache.delete(path));
  }
  return probe;
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
    );
  }
  if (r.failed && r.exitCode === undefined) {
    throw new QemuBinaryError(`could not run ${path}: ${r.shortMessage}`);
  }
  return r.all ?? "";
}

async function runProbe(path: string): Promise<QemuBinaryInfo> {
  const versionText = await run(path, ["-version"]);
  const m = /QEMU emulator version (\d+)\.(\d+)\.(\d+)/.exec(versionText);
  if (!m) {
    const shown = versionText.trim().slice(0, 200) || "(nothing)";
    throw new QemuBinaryError(
      `${path} is not QEMU: "-version" printed ${JSON.stringify(shown)} instead of "QEMU emulator version X.Y.Z"; point the harness at a qemu-system-x86_64`,
    );
  }
  const [, major, minor, micro] = m as unknown as [string, string, string, string];
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
    path,
    version: `${major}.${minor}.${micro}`,
    major: Number(major),
    minor: Number(minor),
    micro: Number(micro),
    banner: versionText.split("\n")[0]?.trim() ?? "",
    accels,
    exitWithParent: /exit-with-parent/.test(helpText),
  };
}

/** "7.2" for 7.2.22: the label tests carry in their names. */
export function shortVersion(info: Pick<QemuBinaryInfo, "major" | "minor">): string {
  return `${info.major}.${info.minor}`;
}
