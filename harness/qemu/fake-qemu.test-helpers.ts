// Test helper: a shell script that answers like QEMU, for resolution and probe tests.

import { chmod, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { dir } from "tmp-promise";
import { expect } from "vitest";

/**
 * A shell script that answers like QEMU: -version, -accel help, -help, and a QMP session on stdio
 * whose query-target reports `arch` (nothing at all when `arch` is undefined).
 */
export function fakeQemuScript(version: string, arch: string | undefined): string {
  const target = arch === undefined ? "" : `{"return": {"arch": "${arch}"}}`;
  return `#!/bin/sh
case "$1" in
-version) echo 'QEMU emulator version ${version} (fake)' ;;
-accel) printf 'Accelerators supported in QEMU binary:\\ntcg\\nkvm\\n' ;;
-help) echo 'usage: fake' ;;
*)
  ${arch === undefined ? "echo 'fake: no QMP here' >&2; exit 1" : ""}
  echo '{"QMP": {"version": {}, "capabilities": []}}'
  while read -r line; do
    case $line in
    *query-target*) echo '${target}' ;;
    *quit*) echo '{"return": {}}'; exit 0 ;;
    *) echo '{"return": {}}' ;;
    esac
  done
  ;;
esac
`;
}

export async function writeFakeQemu(
  path: string,
  version: string,
  arch: string | undefined,
): Promise<void> {
  await execa("mkdir", ["-p", dirname(path)]);
  await writeFile(path, fakeQemuScript(version, arch));
  await chmod(path, 0o755);
}

/** An empty HOME, cache and PATH, TCG forced: what a resolution test starts from. */
export async function scratchEnv() {
  const d = await dir({ unsafeCleanup: true, prefix: "qa-test-" });
  await execa("mkdir", ["-p", join(d.path, "bin")]);
  const env: NodeJS.ProcessEnv = {
    HOME: d.path,
    QEMU_MIGTEST_CACHE: join(d.path, "cache"),
    PATH: join(d.path, "bin"),
    QEMU_MIGTEST_ACCEL: "tcg",
  };
  return { env, root: d.path, done: d.cleanup };
}

/** The error `p` rejects with (failing the test when it resolves). */
export async function errorOf(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(Error);
  return e as Error;
}
