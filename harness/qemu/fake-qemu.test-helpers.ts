// Test helper: a shell script that answers like QEMU, for resolution and probe tests.

import { chmod, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { execa } from "execa";

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
