// A machine type both binaries of a cross-version pair support, from their own query-machines:
// the newest versioned one of a family (pc-i440fx-X.Y, pc-q35-X.Y, virt-X.Y), as QEMU's own
// cross-version migration tests resolve it.

import { PromiseCache } from "../util/promise-cache.ts";
import { Machine } from "./machine.ts";

export type MachineFamily = "pc-i440fx" | "pc-q35" | "virt";

interface MachineInfo {
  name: string;
  alias?: string;
}

// query-machines needs a running QEMU: ask each binary once per process.
const cache = new PromiseCache<string, MachineInfo[]>();

/** Versioned types of a family that a binary offers, e.g. ["pc-i440fx-7.2", ...]. */
async function versionedMachineTypes(
  binary: string,
  family: MachineFamily,
  parentDir?: string,
): Promise<string[]> {
  const machines = cache.get(binary, () => queryMachines(binary, parentDir));
  const re = new RegExp(`^${family}-(\\d+)\\.(\\d+)$`);
  return (await machines).map((x) => x.name).filter((n) => re.test(n));
}

async function queryMachines(binary: string, parentDir?: string): Promise<MachineInfo[]> {
  const m = await Machine.launch({
    name: "machines",
    binary,
    accel: "tcg",
    machineType: "none",
    ...(parentDir ? { parentDir } : {}),
  });
  try {
    return await m.qmp.execute<MachineInfo[]>("query-machines");
  } finally {
    await m.shutdown();
  }
}

function version(name: string): [number, number] {
  const m = /-(\d+)\.(\d+)$/.exec(name);
  return [Number(m?.[1] ?? 0), Number(m?.[2] ?? 0)];
}

/** The newest versioned machine type of `family` in every list, or undefined. */
export function newestCommon(lists: readonly string[][]): string | undefined {
  const [first, ...rest] = lists;
  const common = (first ?? []).filter((n) => rest.every((l) => l.includes(n)));
  return common.sort((a, b) => {
    const [am, an] = version(a);
    const [bm, bn] = version(b);
    return bm - am || bn - an;
  })[0];
}

export async function commonMachineType(
  binaries: readonly string[],
  family: MachineFamily = "pc-i440fx",
  parentDir?: string,
): Promise<string> {
  const lists = await Promise.all(binaries.map((b) => versionedMachineTypes(b, family, parentDir)));
  const common = newestCommon(lists);
  if (!common) {
    throw new Error(
      `no ${family}-X.Y machine type is offered by all of ${binaries.join(", ")} (query-machines); pick binaries closer in version`,
    );
  }
  return common;
}
