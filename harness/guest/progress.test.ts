import { describe, expect, test } from "vitest";
import { BOOTBLOCK_LAYOUT } from "./bootblock.ts";
import { GuestProgressError, parseGuestProgress } from "./progress.ts";

const L = BOOTBLOCK_LAYOUT;
const F = L.statusFields;

/** Guest RAM from 0 up to the end of the status block, as the guest leaves it. */
function ram(fields: Partial<Record<keyof typeof F, number | bigint>>, magic = L.statusMagic) {
  const mem = Buffer.alloc(L.statusAddress + L.statusSize);
  mem.write(magic, L.statusAddress, "latin1");
  mem.writeUInt32LE(L.statusVersion, L.statusAddress + F.version);
  for (const [name, value] of Object.entries(fields)) {
    const at = L.statusAddress + F[name as keyof typeof F];
    if (name === "version" || name === "calibrationRejected") mem.writeUInt32LE(Number(value), at);
    else mem.writeBigUInt64LE(BigInt(value), at);
  }
  return mem;
}

describe("parseGuestProgress", () => {
  test("every field at its offset; the asked rate also in MiB/s; the TSC as a bigint", () => {
    const mem = ram({
      passCounter: 7,
      pagesWritten: 123_456,
      progressTsc: 2n ** 60n + 5n,
      tscHz: 2_596_000_000,
      pagesPerSecond: 8192,
      scheduleRestarts: 3,
      calibrationSpreadPpm: 1200,
      calibrationRejected: 2,
    });
    expect(parseGuestProgress(mem, 0)).toEqual({
      passCounter: 7,
      pagesWritten: 123_456,
      progressTsc: 2n ** 60n + 5n,
      tscHz: 2_596_000_000,
      pagesPerSecond: 8192,
      askedMiBps: 32,
      scheduleRestarts: 3,
      calibrationSpreadPpm: 1200,
      calibrationRejected: 2,
    });
    // The same block read on its own, as readGuestProgress does.
    const block = mem.subarray(L.statusAddress);
    expect(parseGuestProgress(block, L.statusAddress)?.pagesWritten).toBe(123_456);
  });

  test("no magic yet is undefined; another layout version is an error naming the rebuild", () => {
    expect(parseGuestProgress(ram({}, "MIGTXXXX" as typeof L.statusMagic), 0)).toBeUndefined();
    expect(() => parseGuestProgress(ram({ version: 1 }), 0)).toThrow(GuestProgressError);
    expect(() => parseGuestProgress(ram({ version: 1 }), 0)).toThrow(
      /layout version 1, expected 2.*scripts\/build-images/,
    );
  });

  test("memory that does not cover the block is a RangeError", () => {
    expect(() => parseGuestProgress(Buffer.alloc(0x7010), 0)).toThrow(RangeError);
    expect(() => parseGuestProgress(Buffer.alloc(0x100), 0x7010)).toThrow(RangeError);
  });
});
