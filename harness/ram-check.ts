// Verifies guest RAM left behind by the bootblock guest (guest-bootblock.ts) after a migration.
// Pure logic over bytes plus one file reader; talks to no QEMU.
//
// What the guest guarantees, for every page P of [rangeStart, rangeEnd):
//   - byte P+0 is the pass byte; bytes P+8..P+15 hold P (u64 LE); every other byte is zero;
//   - passes increment the pass byte of every page in address order, then increment the u64
//     pass counter (one instruction), then print a marker.
// So at any instruction boundary, with c = pass counter, there is a page I in [start, end] with
//   pass byte = (c + 1) mod 256 for pages below I, and c mod 256 for pages from I on.
// I = start (all pages hold c) and I = end (all hold c + 1: the pass is done, the counter not yet
// incremented) are both legal; 0 < I - start < end - start is reported as the interruption point.
// Without a pass counter, any value h may stand for c + 1: pages below I hold h, pages from I on
// hold h - 1 (mod 256). Every other page is bad.

import { open } from "node:fs/promises";
import { BOOTBLOCK_LAYOUT } from "./guest-bootblock.ts";

export interface RamCheckOptions {
  /** Guest-physical address of mem[0]. */
  base: number;
  rangeStart: number;
  rangeEnd: number;
  /** The guest's pass counter (see readBootblockStatus); makes the check exact. */
  passCounter?: number;
  /** Also check bytes 1..4095 of every page (address tag, zeros). Default true. */
  pageContents?: boolean;
}

export interface RamBadByte {
  /** Guest-physical address of the first wrong byte of a bad page. */
  address: number;
  expected: number;
  actual: number;
}

export interface RamCheckResult {
  ok: boolean;
  pagesChecked: number;
  badPages: number;
  /** Up to 10 bad pages, in address order. */
  firstBad: RamBadByte[];
  /** First page still holding the older pass byte, when a pass was interrupted mid-range. */
  interruptionAt?: number;
  /** Pass byte expected below the interruption point (of every page when there is none). */
  passByte: number;
  /** Pass byte expected from the interruption point on. */
  passByteAfterInterruption?: number;
  passCounter?: number;
  /** One human line. */
  summary: string;
}

const MAX_REPORTED = 10;
const MiB = 1024 * 1024;

export function checkBootblockRam(mem: Uint8Array, opts: RamCheckOptions): RamCheckResult {
  const { pageSize, passByteOffset, pageTagOffset } = BOOTBLOCK_LAYOUT;
  const { base, rangeStart, rangeEnd, passCounter } = opts;
  const pageContents = opts.pageContents ?? true;
  if (rangeStart % pageSize !== 0 || rangeEnd % pageSize !== 0 || rangeStart >= rangeEnd) {
    throw new RangeError(
      `RAM check range ${hex(rangeStart)}..${hex(rangeEnd)} is empty or unaligned`,
    );
  }
  if (rangeStart < base || rangeEnd > base + mem.length) {
    throw new RangeError(
      `RAM check range ${hex(rangeStart)}..${hex(rangeEnd)} is not inside the ${mem.length} bytes read from ${hex(base)}`,
    );
  }
  if (passCounter !== undefined && (!Number.isSafeInteger(passCounter) || passCounter < 0)) {
    throw new RangeError(`pass counter must be a non-negative integer, got ${passCounter}`);
  }

  const pages = (rangeEnd - rangeStart) / pageSize;
  const first = rangeStart - base;
  const passBytes = new Uint8Array(pages);
  for (let i = 0; i < pages; i++) passBytes[i] = mem[first + i * pageSize + passByteOffset] ?? 0;

  const candidates =
    passCounter === undefined ? modeCandidates(passBytes) : [(passCounter + 1) & 0xff];
  let best = fitInterruption(passBytes, candidates[0] ?? 0);
  for (const h of candidates.slice(1)) {
    const fit = fitInterruption(passBytes, h);
    if (fit.mismatches < best.mismatches) best = fit;
  }
  const upper = best.upper;
  const lower = (upper + 0xff) & 0xff;
  const split = best.split;

  // A page is bad when any byte differs from the expected page; report its first wrong byte.
  const buf = Buffer.from(mem.buffer, mem.byteOffset, mem.byteLength);
  const expected = Buffer.alloc(pageSize);
  const tag = new DataView(expected.buffer, expected.byteOffset + pageTagOffset, 8);
  let badPages = 0;
  const firstBad: RamBadByte[] = [];
  for (let i = 0; i < pages; i++) {
    const address = rangeStart + i * pageSize;
    const offset = first + i * pageSize;
    const want = i < split ? upper : lower;
    let badAt = -1;
    if (passBytes[i] !== want) {
      badAt = passByteOffset;
    } else if (pageContents) {
      expected[passByteOffset] = want;
      tag.setBigUint64(0, BigInt(address), true);
      if (buf.compare(expected, 0, pageSize, offset, offset + pageSize) !== 0) {
        badAt = firstDifference(buf, offset, expected);
      }
    }
    if (badAt < 0) continue;
    badPages++;
    if (firstBad.length < MAX_REPORTED) {
      firstBad.push({
        address: address + badAt,
        expected: badAt === passByteOffset ? want : (expected[badAt] ?? 0),
        actual: buf[offset + badAt] ?? 0,
      });
    }
  }

  const result: RamCheckResult = {
    ok: badPages === 0,
    pagesChecked: pages,
    badPages,
    firstBad,
    passByte: split === 0 ? lower : upper,
    summary: "",
  };
  if (split > 0 && split < pages) {
    result.interruptionAt = rangeStart + split * pageSize;
    result.passByteAfterInterruption = lower;
  }
  if (passCounter !== undefined) result.passCounter = passCounter;
  result.summary = summarize(result, rangeStart, rangeEnd);
  return result;
}

/** The two pass bytes the pages below the interruption point may hold: mode and mode + 1. */
function modeCandidates(passBytes: Uint8Array): number[] {
  const histogram = new Uint32Array(256);
  for (const b of passBytes) histogram[b] = (histogram[b] ?? 0) + 1;
  let mode = 0;
  for (let v = 1; v < 256; v++) if ((histogram[v] ?? 0) > (histogram[mode] ?? 0)) mode = v;
  return [mode, (mode + 1) & 0xff];
}

/** Best split for "pages below split hold upper, the rest upper - 1": fewest mismatching pages. */
function fitInterruption(
  passBytes: Uint8Array,
  upper: number,
): { upper: number; split: number; mismatches: number } {
  const lower = (upper + 0xff) & 0xff;
  let above = 0; // mismatches of pages [0, k) against upper
  let below = 0; // mismatches of pages [k, n) against lower
  for (const b of passBytes) if (b !== lower) below++;
  let best = { upper, split: 0, mismatches: below };
  for (let k = 0; k < passBytes.length; k++) {
    const b = passBytes[k];
    if (b !== upper) above++;
    if (b !== lower) below--;
    if (above + below < best.mismatches) best = { upper, split: k + 1, mismatches: above + below };
  }
  return best;
}

function firstDifference(buf: Buffer, offset: number, expected: Buffer): number {
  for (let j = 0; j < expected.length; j++) if (buf[offset + j] !== expected[j]) return j;
  return -1;
}

function summarize(r: RamCheckResult, start: number, end: number): string {
  const counter = r.passCounter === undefined ? "" : `, pass counter ${r.passCounter}`;
  const where = `${r.pagesChecked} pages ${size(start)}..${size(end)}`;
  if (r.ok) {
    const cut =
      r.interruptionAt === undefined
        ? `pass byte ${byte(r.passByte)}, no interruption`
        : `pass byte ${byte(r.passByte)}/${byte(r.passByteAfterInterruption ?? 0)}, interrupted at ${hex(r.interruptionAt)}`;
    return `RAM check OK: ${where}${counter}, ${cut}`;
  }
  const shown = r.firstBad
    .slice(0, 3)
    .map((b) => `${hex(b.address)} expected ${byte(b.expected)} got ${byte(b.actual)}`)
    .join("; ");
  const more = r.badPages > 3 ? `; ${r.badPages - 3} more` : "";
  const cut = r.interruptionAt === undefined ? "" : `, interruption at ${hex(r.interruptionAt)}`;
  return `RAM check FAILED: ${r.badPages} bad of ${where}${counter}${cut}: ${shown}${more}`;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function byte(n: number): string {
  return `0x${n.toString(16).padStart(2, "0")}`;
}

function size(n: number): string {
  return n % MiB === 0 ? `${n / MiB} MiB` : hex(n);
}

export interface BootblockStatus {
  passCounter: number;
}

/** The guest's status block, when mem covers it and the guest has written its magic. */
export function readBootblockStatus(mem: Uint8Array, base: number): BootblockStatus | undefined {
  const { statusAddress, statusMagic, passCounterAddress } = BOOTBLOCK_LAYOUT;
  const at = statusAddress - base;
  if (at < 0 || passCounterAddress + 8 - base > mem.length) return undefined;
  const magic = new TextDecoder().decode(mem.subarray(at, at + statusMagic.length));
  if (magic !== statusMagic) return undefined;
  const view = new DataView(mem.buffer, mem.byteOffset + passCounterAddress - base, 8);
  return { passCounter: Number(view.getBigUint64(0, true)) };
}

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
