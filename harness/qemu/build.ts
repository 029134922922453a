// Builds a qemu-system-x86_64 with scripts/build-qemu: a QEMU tree or a Debian source version,
// with patches applied or reverted, cached by (source, patches, configure flags). The result is a
// drop-in wrapper path, usable anywhere a binary spec is (MigrationPair, QEMU_MIGTEST_BINARIES).

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

const BUILD_QEMU_SCRIPT = fileURLToPath(new URL("../../scripts/build-qemu", import.meta.url));

/** Where the QEMU source comes from: Debian's source package, or a tree on disk. */
export type QemuSource = { debian: string } | { tree: string };

export interface QemuPatch {
  file: string;
  /** "apply" (default) or "revert" (patch -R). */
  mode?: "apply" | "revert";
}

export interface QemuBuildRequest {
  source: QemuSource;
  /** In order; each is a git-format mail or a plain -p1 diff. */
  patches?: QemuPatch[];
  /** Added after build-qemu's default configure flags. */
  configureFlags?: string[];
  jobs?: number;
  /** Every progress line build-qemu prints (stderr), as it comes. */
  onProgress?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export interface QemuBuild {
  /** The drop-in wrapper: builds/<hash>/qemu-system-x86_64. */
  wrapper: string;
  hash: string;
  /** Nothing was compiled: the cache had it. */
  cached: boolean;
  /** "10.2.2 (Debian 1:10.2.2+ds-1)" or whatever -version printed, from BUILDINFO. */
  version: string;
  /** BUILDINFO, key by key (patch-file lines collected in `patchFiles`). */
  info: Record<string, string>;
  patchFiles: string[];
  durationMs: number;
  /** build-qemu's progress lines. */
  log: string[];
}

export class QemuBuildError extends Error {
  override name = "QemuBuildError";
  constructor(
    message: string,
    readonly log: string[],
  ) {
    super(message);
  }
}

/** build-qemu's command line for a request (without the script itself). */
export function buildQemuArgs(request: Omit<QemuBuildRequest, "onProgress" | "env">): string[] {
  const args =
    "debian" in request.source
      ? ["--debian", request.source.debian]
      : ["--source", resolve(request.source.tree)];
  for (const p of request.patches ?? []) {
    args.push(p.mode === "revert" ? "--revert" : "--patch", resolve(p.file));
  }
  for (const f of request.configureFlags ?? []) args.push("--configure-flag", f);
  if (request.jobs !== undefined) args.push("--jobs", String(request.jobs));
  return args;
}

/** A source spec as the CLI takes it: a directory is a tree, anything else a Debian version. */
export function parseSourceSpec(spec: string): QemuSource {
  return spec.includes("/") || existsSync(join(spec, "configure"))
    ? { tree: spec }
    : { debian: spec };
}

/** BUILDINFO: "key value" lines; repeated patch-file lines go to patchFiles. */
export function parseBuildInfo(text: string): {
  info: Record<string, string>;
  patchFiles: string[];
} {
  const info: Record<string, string> = {};
  const patchFiles: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+) (.*)$/.exec(line);
    if (!m?.[1] || m[2] === undefined) continue;
    if (m[1] === "patch-file") patchFiles.push(m[2]);
    else info[m[1]] = m[2];
  }
  return { info, patchFiles };
}

/** The cache key build-qemu would use, without building anything. */
export async function buildHash(request: Omit<QemuBuildRequest, "onProgress">): Promise<string> {
  const r = await execa(BUILD_QEMU_SCRIPT, [...buildQemuArgs(request), "--print-hash"], {
    reject: false,
    env: request.env,
    stdin: "ignore",
  });
  if (r.exitCode !== 0) throw new QemuBuildError(String(r.stderr).trim(), [String(r.stderr)]);
  return String(r.stdout).trim();
}

/**
 * Dry-run `patches` (in order) on a source tree without building or changing it. Throws
 * QemuBuildError naming the patch, the file and the hunk that failed.
 */
export async function checkPatches(
  tree: string,
  patches: QemuPatch[],
  env?: NodeJS.ProcessEnv,
): Promise<void> {
  const r = await execa(
    BUILD_QEMU_SCRIPT,
    [...buildQemuArgs({ source: { tree }, patches }), "--check-patches"],
    { reject: false, env, stdin: "ignore" },
  );
  if (r.exitCode !== 0) {
    const log = String(r.stderr).split("\n");
    const at = log.findIndex((l) => l.startsWith("build-qemu: error:"));
    throw new QemuBuildError((at >= 0 ? log.slice(at) : log).join("\n"), log);
  }
}

/**
 * Build (or take from the cache) one qemu-system-x86_64. Throws QemuBuildError with
 * build-qemu's own message (which patch, file and hunk failed; which step; the log's tail).
 */
export async function buildQemu(request: QemuBuildRequest): Promise<QemuBuild> {
  const started = Date.now();
  const log: string[] = [];
  const child = execa(BUILD_QEMU_SCRIPT, buildQemuArgs(request), {
    reject: false,
    env: request.env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let partial = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      log.push(line);
      request.onProgress?.(line);
    }
  });
  const r = await child;
  if (partial) {
    log.push(partial);
    request.onProgress?.(partial);
  }
  if (r.exitCode !== 0) {
    const errorAt = log.findIndex((l) => l.startsWith("build-qemu: error:"));
    const message =
      errorAt >= 0
        ? log.slice(errorAt).join("\n")
        : `build-qemu exited with ${r.exitCode ?? r.signal}: ${log.slice(-10).join("\n")}`;
    throw new QemuBuildError(message, log);
  }
  const wrapper = String(r.stdout).trim().split("\n").pop() ?? "";
  if (!wrapper.endsWith("/qemu-system-x86_64")) {
    throw new QemuBuildError(
      `build-qemu printed no wrapper path (stdout: ${JSON.stringify(r.stdout)})`,
      log,
    );
  }
  const dir = dirname(wrapper);
  const { info, patchFiles } = parseBuildInfo(await readFile(join(dir, "BUILDINFO"), "utf8"));
  return {
    wrapper,
    hash: dir.split("/").pop() ?? "",
    cached: log.some((l) => l.startsWith("build-qemu: cached:")),
    version: info.version ?? "unknown",
    info,
    patchFiles,
    durationMs: Date.now() - started,
    log,
  };
}
