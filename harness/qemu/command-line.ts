// The qemu-system-* command line of one machine, built from its options alone: no process,
// no file system, so a test can pin every argument for a given set of options.

import { join } from "node:path";
import type { Accel } from "./accel.ts";

/** The files a machine keeps in its own temp dir. */
export interface MachineFiles {
  qmpSocket: string;
  serialLog: string;
  /** QEMU's stdout and stderr, interleaved. */
  stderrLog: string;
  pidFile: string;
}

export function machineFiles(dir: string): MachineFiles {
  return {
    qmpSocket: join(dir, "qmp.sock"),
    serialLog: join(dir, "serial.log"),
    stderrLog: join(dir, "stderr.log"),
    pidFile: join(dir, "qemu.pid"),
  };
}

const DEFAULT_MEMORY_MIB = 128;

export interface QemuArgsSpec {
  /** -name; also the first word of every message about this machine. */
  name: string;
  /** -machine type (default `pc`). */
  machineType?: string;
  /** -cpu model (default: QEMU's own for the machine type). */
  cpu?: string;
  memoryMiB?: number;
  accel: Accel;
  /** The binary has `-run-with exit-with-parent=on` (10.2+). */
  exitWithParent: boolean;
  /** The machine's temp dir, holding its MachineFiles. */
  dir: string;
  /** Guest RAM as this shared memory-backend-file, readable in place by the harness. */
  ramFile?: string;
  /** Its id: the board's own RAM block name (default `pc.ram`, machine-arch.ts). */
  ramBlockId?: string;
  /** `-incoming defer`: a migration destination waiting for migrate-incoming. */
  incoming?: boolean;
  /** Arguments that load the guest (firmware, disks). */
  guestArgs?: readonly string[];
  extraArgs?: readonly string[];
}

/** The arguments after the binary's path. */
export function qemuArgs(spec: QemuArgsSpec): string[] {
  const files = machineFiles(spec.dir);
  const memoryMiB = spec.memoryMiB ?? DEFAULT_MEMORY_MIB;
  return [
    "-name",
    spec.name,
    "-machine",
    spec.machineType ?? "pc",
    ...(spec.cpu ? ["-cpu", spec.cpu] : []),
    "-accel",
    spec.accel,
    "-m",
    `${memoryMiB}M`,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    // -qmp, not -chardev + -mon: 11.1 warns that -mon is deprecated.
    "-qmp",
    `unix:${files.qmpSocket},server=on,wait=off`,
    "-chardev",
    `file,id=serial0,path=${files.serialLog}`,
    "-serial",
    "chardev:serial0",
    "-pidfile",
    files.pidFile,
    ...(spec.exitWithParent ? ["-run-with", "exit-with-parent=on"] : []),
    ...(spec.ramFile
      ? [
          "-object",
          `memory-backend-file,id=${spec.ramBlockId ?? "pc.ram"},size=${memoryMiB}M,mem-path=${spec.ramFile},share=on`,
          "-machine",
          `memory-backend=${spec.ramBlockId ?? "pc.ram"}`,
        ]
      : []),
    ...(spec.incoming ? ["-incoming", "defer"] : []),
    ...(spec.guestArgs ?? []),
    ...(spec.extraArgs ?? []),
  ];
}

/**
 * What to exec for `commandLine`: under `setpriv --pdeathsig SIGKILL` when the host has setpriv.
 * The parent-death signal survives exec and ends QEMU even when Node is SIGKILLed; it fires when
 * the spawning thread exits, and Node spawns from its main thread.
 */
export function spawnCommand(
  commandLine: readonly string[],
  setpriv: string | undefined,
): { file: string; args: string[] } {
  const [binary = "", ...args] = commandLine;
  return setpriv
    ? { file: setpriv, args: ["--pdeathsig", "SIGKILL", "--", ...commandLine] }
    : { file: binary, args };
}
