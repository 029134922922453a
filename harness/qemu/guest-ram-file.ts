// Guest-physical memory as a file: a shared `memory-backend-file` or a `pmemsave` dump.

import { open } from "node:fs/promises";
import { hex } from "../util/text.ts";
import { MiB } from "../util/units.ts";

/** Largest single read(2): Linux returns at most ~2 GiB per call anyway. */
const READ_CHUNK = 256 * MiB;

/**
 * Read `length` bytes at `offset` of a guest RAM file: a `memory-backend-file` on /dev/shm
 * (for `pc`/`q35` guests below 2 GiB, guest-physical address == file offset) or a `pmemsave` dump.
 */
export async function readGuestRamFile(
  path: string,
  offset: number,
  length: number,
): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    if (offset + length > size) {
      throw new RangeError(
        `guest RAM file ${path} is ${size} bytes; cannot read ${length} bytes at offset ${hex(offset)}`,
      );
    }
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(
        buf,
        done,
        Math.min(READ_CHUNK, length - done),
        offset + done,
      );
      if (bytesRead === 0) throw new Error(`guest RAM file ${path} ended at ${hex(offset + done)}`);
      done += bytesRead;
    }
    return buf;
  } finally {
    await handle.close();
  }
}
