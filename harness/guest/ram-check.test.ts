import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { readGuestRamFile } from "../qemu/guest-ram-file.ts";
import {
  BootblockRamChecker,
  checkBootblockRam,
  checkBootblockRamFile,
  readBootblockStatus,
} from "./ram-check.ts";

const PAGE = 4096;
const MiB = 1024 * 1024;

interface Synth {
  base: number;
  size: number;
  rangeStart: number;
  rangeEnd: number;
  /** Completed passes (the guest's counter). */
  passes: number;
  /** Pages of the running pass already incremented (0 = none). */
  doneInPass?: number;
}

/** Guest RAM as the bootblock leaves it, written out independently of the checker's model. */
function synthesize(s: Synth): Uint8Array {
  const mem = new Uint8Array(s.size);
  const view = new DataView(mem.buffer);
  mem.set(new TextEncoder().encode("MIGTSTAT"), 0x7000 - s.base);
  view.setBigUint64(0x7008 - s.base, BigInt(s.passes), true);
  let index = 0;
  for (let a = s.rangeStart; a < s.rangeEnd; a += PAGE, index++) {
    const increments = s.passes + (index < (s.doneInPass ?? 0) ? 1 : 0);
    mem[a - s.base] = increments % 256;
    view.setBigUint64(a - s.base + 8, BigInt(a), true);
  }
  return mem;
}

const small = { base: 0, size: 4 * MiB, rangeStart: 1 * MiB, rangeEnd: 4 * MiB };
const opts = { base: 0, rangeStart: 1 * MiB, rangeEnd: 4 * MiB };

describe("checkBootblockRam", () => {
  test("a fresh range (after the start marker, pass counter 0) is OK", () => {
    const mem = synthesize({ ...small, passes: 0 });
    const r = checkBootblockRam(mem, { ...opts, passCounter: 0 });
    expect(r.ok).toBe(true);
    expect(r.pagesChecked).toBe(768);
    expect(r.badPages).toBe(0);
    expect(r.interruptionAt).toBeUndefined();
    expect(r.passByte).toBe(0);
    expect(r.summary).toBe(
      "RAM check OK: 768 pages 1 MiB..4 MiB, pass counter 0, pass byte 0x00, no interruption",
    );
  });

  test("a pass interrupted mid-range is OK and reports where", () => {
    const mem = synthesize({ ...small, passes: 300, doneInPass: 17 });
    const r = checkBootblockRam(mem, { ...opts, passCounter: 300 });
    expect(r.ok).toBe(true);
    expect(r.interruptionAt).toBe(1 * MiB + 17 * PAGE);
    expect(r.passByte).toBe(301 % 256);
    expect(r.passByteAfterInterruption).toBe(300 % 256);
    expect(r.summary).toContain("interrupted at 0x111000");
  });

  test("the interruption point is found without a pass counter, across the 255 -> 0 wrap", () => {
    const mem = synthesize({ ...small, passes: 255, doneInPass: 500 });
    const r = checkBootblockRam(mem, opts);
    expect(r.ok).toBe(true);
    expect(r.interruptionAt).toBe(1 * MiB + 500 * PAGE);
    expect(r.passByte).toBe(0);
    expect(r.passByteAfterInterruption).toBe(255);
  });

  test("a finished pass whose counter is not yet incremented is OK", () => {
    const mem = synthesize({ ...small, passes: 9, doneInPass: 768 });
    expect(checkBootblockRam(mem, { ...opts, passCounter: 9 }).ok).toBe(true);
  });

  test("a corrupted pass byte fails with its address, expected and actual value", () => {
    const mem = synthesize({ ...small, passes: 36, doneInPass: 100 });
    mem[0x234000] = 0x99;
    const r = checkBootblockRam(mem, { ...opts, passCounter: 36 });
    expect(r.ok).toBe(false);
    expect(r.badPages).toBe(1);
    expect(r.firstBad).toEqual([{ address: 0x234000, expected: 36, actual: 0x99 }]);
    expect(r.interruptionAt).toBe(1 * MiB + 100 * PAGE);
    expect(r.summary).toBe(
      "RAM check FAILED: 1 bad of 768 pages 1 MiB..4 MiB, pass counter 36, interruption at 0x164000: " +
        "0x234000 expected 0x24 got 0x99",
    );
  });

  test("a corrupted byte elsewhere in a page fails with that byte's address", () => {
    const mem = synthesize({ ...small, passes: 3 });
    mem[0x200123] = 7;
    mem[0x30000a] = 0x20; // inside the address tag, was 0x30
    const r = checkBootblockRam(mem, { ...opts, passCounter: 3 });
    expect(r.badPages).toBe(2);
    expect(r.firstBad).toEqual([
      { address: 0x200123, expected: 0, actual: 7 },
      { address: 0x30000a, expected: 0x30, actual: 0x20 },
    ]);
    // Without page contents only pass bytes count.
    expect(checkBootblockRam(mem, { ...opts, passCounter: 3, pageContents: false }).ok).toBe(true);
  });

  test("a page copied to the wrong address fails on its address tag", () => {
    const mem = synthesize({ ...small, passes: 5 });
    mem.copyWithin(0x280000, 0x281000, 0x282000);
    const r = checkBootblockRam(mem, { ...opts, passCounter: 5 });
    expect(r.ok).toBe(false);
    expect(r.firstBad[0]).toEqual({ address: 0x280009, expected: 0x00, actual: 0x10 });
  });

  test("two interruption points fail", () => {
    const mem = synthesize({ ...small, passes: 40, doneInPass: 100 });
    for (let i = 700; i < 768; i++) mem[1 * MiB + i * PAGE] = 41;
    const r = checkBootblockRam(mem, opts);
    expect(r.ok).toBe(false);
    expect(r.badPages).toBe(68);
    expect(r.interruptionAt).toBe(1 * MiB + 100 * PAGE);
    expect(r.firstBad[0]).toEqual({ address: 1 * MiB + 700 * PAGE, expected: 40, actual: 41 });
    expect(r.firstBad).toHaveLength(10);
    expect(r.summary).toMatch(/^RAM check FAILED: 68 bad of 768 pages/);
  });

  test("a pass counter that does not match the pages fails", () => {
    const mem = synthesize({ ...small, passes: 40, doneInPass: 100 });
    const right = checkBootblockRam(mem, { ...opts, passCounter: 40 });
    expect(right.ok).toBe(true);
    const wrong = checkBootblockRam(mem, { ...opts, passCounter: 41 });
    expect(wrong.ok).toBe(false);
    expect(wrong.badPages).toBe(668);
    expect(wrong.firstBad[0]).toEqual({ address: 1 * MiB + 100 * PAGE, expected: 41, actual: 40 });
    // Off by 256 cannot be seen in a byte, off by 2 can.
    expect(checkBootblockRam(mem, { ...opts, passCounter: 42 }).badPages).toBe(768);
  });

  test("pages that stopped changing (one value for all) fail against a newer counter", () => {
    const mem = synthesize({ ...small, passes: 7 });
    expect(checkBootblockRam(mem, { ...opts, passCounter: 8 }).ok).toBe(false);
  });

  test("works on a buffer that starts above guest address 0", () => {
    const mem = synthesize({ ...small, passes: 2, doneInPass: 3 }).subarray(1 * MiB);
    const r = checkBootblockRam(mem, { base: 1 * MiB, rangeStart: 1 * MiB, rangeEnd: 4 * MiB });
    expect(r.ok).toBe(true);
    expect(r.interruptionAt).toBe(1 * MiB + 3 * PAGE);
  });

  test("a range outside the buffer is a usage error, not a RAM failure", () => {
    const mem = new Uint8Array(2 * MiB);
    expect(() => checkBootblockRam(mem, opts)).toThrow(RangeError);
    expect(() =>
      checkBootblockRam(mem, { base: 0, rangeStart: 1 * MiB, rangeEnd: 1 * MiB + 10 }),
    ).toThrow(/unaligned/);
  });
});

describe("BootblockRamChecker", () => {
  test("fed in uneven pieces it reaches the same verdict as the whole buffer", () => {
    const mem = synthesize({ ...small, passes: 77, doneInPass: 300 });
    mem[0x2ff005] = 1;
    mem[0x150000] = 0x42;
    const whole = checkBootblockRam(mem, { ...opts, passCounter: 77 });
    expect(whole.badPages).toBe(2);
    const checker = new BootblockRamChecker({ ...opts, passCounter: 77 });
    const range = mem.subarray(1 * MiB, 4 * MiB);
    for (const [from, to] of [
      [0, PAGE],
      [PAGE, 513 * PAGE],
      [513 * PAGE, 3 * MiB],
    ] as const) {
      checker.update(range.subarray(from, to));
    }
    expect(checker.finish()).toEqual(whole);
  });

  test("a piece that is not whole pages, or a finish before the end, is a usage error", () => {
    const checker = new BootblockRamChecker(opts);
    expect(() => checker.update(new Uint8Array(PAGE + 1))).toThrow(/not whole pages/);
    checker.update(new Uint8Array(PAGE));
    expect(() => checker.finish()).toThrow(/got 1 of 768 pages/);
  });
});

describe("checkBootblockRamFile", () => {
  // 10 MiB: the range spans several of the reader's chunks.
  const big = { base: 0, size: 10 * MiB, rangeStart: 1 * MiB, rangeEnd: 10 * MiB };
  const bigOpts = { base: 0, rangeStart: 1 * MiB, rangeEnd: 10 * MiB };

  test("agrees with the in-memory check on a good and a corrupted file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ram-check-"));
    try {
      const path = join(dir, "ram");
      const mem = synthesize({ ...big, passes: 12, doneInPass: 1500 });
      await writeFile(path, mem);
      const good = await checkBootblockRamFile(path, { ...bigOpts, passCounter: 12 });
      expect(good.ok).toBe(true);
      expect(good).toEqual(checkBootblockRam(mem, { ...bigOpts, passCounter: 12 }));
      mem[0x7ff00d] = 0xee; // near the end of a 4 MiB chunk
      mem[0x900000] = 0x33; // a pass byte in the last chunk
      await writeFile(path, mem);
      const bad = await checkBootblockRamFile(path, { ...bigOpts, passCounter: 12 });
      expect(bad.badPages).toBe(2);
      expect(bad.firstBad).toEqual([
        { address: 0x7ff00d, expected: 0, actual: 0xee },
        { address: 0x900000, expected: 12, actual: 0x33 },
      ]);
      expect(bad).toEqual(checkBootblockRam(mem, { ...bigOpts, passCounter: 12 }));
      await expect(checkBootblockRamFile(path, { ...bigOpts, rangeEnd: 11 * MiB })).rejects.toThrow(
        /not inside guest RAM file/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("readBootblockStatus", () => {
  test("reads the pass counter behind its magic", () => {
    const mem = synthesize({ ...small, passes: 123456 });
    expect(readBootblockStatus(mem, 0)).toEqual({ passCounter: 123456 });
  });
  test("is undefined when the magic is missing or the block is not covered", () => {
    expect(readBootblockStatus(new Uint8Array(0x8000), 0)).toBeUndefined();
    const mem = synthesize({ ...small, passes: 1 });
    expect(readBootblockStatus(mem.subarray(1 * MiB), 1 * MiB)).toBeUndefined();
  });
});

describe("readGuestRamFile", () => {
  test("reads a region at an offset and rejects a read past the end", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ram-check-"));
    try {
      const path = join(dir, "ram");
      const data = Buffer.alloc(3 * MiB);
      for (let i = 0; i < data.length; i += 4093) data[i] = i & 0xff;
      await writeFile(path, data);
      const part = await readGuestRamFile(path, MiB + 5, MiB);
      expect(part.equals(data.subarray(MiB + 5, 2 * MiB + 5))).toBe(true);
      await expect(readGuestRamFile(path, 2 * MiB, 2 * MiB)).rejects.toThrow(/cannot read/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
