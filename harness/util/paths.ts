// Where the harness puts files that QEMU shares with it.

import { existsSync } from "node:fs";
import { tmpdir } from "node:os";

/** /dev/shm when the host has it (tmpfs: guest RAM files cost no disk I/O), else the OS temp dir. */
export function sharedMemoryDir(): string {
  return existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
}
