// Reads of sysfs, /dev and /proc for the probe: a missing or unreadable file is an answer
// ("no driver", "no groups"), never an exception.

import { accessSync, constants, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { basename } from "node:path";

export function listDir(path: string): string[] {
  try {
    return readdirSync(path).sort();
  } catch {
    return [];
  }
}

/** The last component of a symlink's target (sysfs links: driver, iommu_group, mdev_type). */
export function linkName(path: string): string | undefined {
  try {
    return basename(readlinkSync(path));
  } catch {
    return undefined;
  }
}

export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Readable and writable by this process, as opening a VFIO node needs. */
export function accessible(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}
