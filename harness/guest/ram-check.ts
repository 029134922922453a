// Verifies guest RAM left behind by the bootblock guest (bootblock.ts) after a migration.
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
import type { QemuArch } from "../qemu/arch.ts";
import { BOOTBLOCK_LAYOUT, bootblockArch } from "./bootblock.ts";

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
  const { base, rangeStart, rangeEnd } = opts;
  const checker = new BootblockRamChecker(opts);
  if (rangeStart < base || rangeEnd > base + mem.length) {
    throw new RangeError(
      `RAM check range ${hex(rangeStart)}..${hex(rangeEnd)} is not inside the ${mem.length} bytes read from ${hex(base)}`,
    );
  }
  checker.update(mem.subarray(rangeStart - base, rangeEnd - base));
  return checker.finish();
}

interface ContentDifference {
  /** Offset of the first wrong byte inside the page (never the pass byte). */
  at: number;
  expected: number;
  actual: number;
}

/**
 * checkBootblockRam fed piece by piece, so a large range can be checked through one small reused
 * buffer: touching a fresh 1 GiB buffer costs seconds of page faults, the check itself ~0.1 s.
 * Pages are judged in two steps: bytes 1..4095 as they arrive; the pass bytes at finish(), when
 * the interruption point is known.
 */
export class BootblockRamChecker {
  private readonly pages: number;
  private readonly passBytes: Uint8Array;
  /** 1 for a page whose bytes other than the pass byte are wrong. */
  private readonly contentBad: Uint8Array;
  /** The first MAX_REPORTED content-bad pages: enough for the first MAX_REPORTED bad pages. */
  private readonly differences = new Map<number, ContentDifference>();
  private readonly expected: Buffer;
  private readonly tag: DataView;
  private readonly pageContents: boolean;
  /** Pages received so far. */
  private next = 0;

  constructor(private readonly opts: Omit<RamCheckOptions, "base">) {
    const { pageSize, pageTagOffset } = BOOTBLOCK_LAYOUT;
    const { rangeStart, rangeEnd, passCounter } = opts;
    if (rangeStart % pageSize !== 0 || rangeEnd % pageSize !== 0 || rangeStart >= rangeEnd) {
      throw new RangeError(
        `RAM check range ${hex(rangeStart)}..${hex(rangeEnd)} is empty or unaligned`,
      );
    }
    if (passCounter !== undefined && (!Number.isSafeInteger(passCounter) || passCounter < 0)) {
      throw new RangeError(`pass counter must be a non-negative integer, got ${passCounter}`);
    }
    this.pages = (rangeEnd - rangeStart) / pageSize;
    this.passBytes = new Uint8Array(this.pages);
    this.contentBad = new Uint8Array(this.pages);
    this.pageContents = opts.pageContents ?? true;
    this.expected = Buffer.alloc(pageSize);
    this.tag = new DataView(this.expected.buffer, this.expected.byteOffset + pageTagOffset, 8);
  }

  /** The next whole pages of the range, in address order. */
  update(chunk: Uint8Array): void {
    const { pageSize, passByteOffset } = BOOTBLOCK_LAYOUT;
    if (chunk.length % pageSize !== 0 || this.next + chunk.length / pageSize > this.pages) {
      throw new RangeError(
        `RAM check fed ${chunk.length} bytes at page ${this.next} of ${this.pages}: not whole pages inside the range`,
      );
    }
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const { expected, tag } = this;
    // The template's pass byte stays 0 and is skipped: bytes 1..4095 are compared here.
    const from = passByteOffset + 1;
    for (let offset = 0; offset < buf.length; offset += pageSize, this.next++) {
      const i = this.next;
      this.passBytes[i] = buf[offset + passByteOffset] ?? 0;
      if (!this.pageContents) continue;
      tag.setBigUint64(0, BigInt(this.opts.rangeStart + i * pageSize), true);
      if (buf.compare(expected, from, pageSize, offset + from, offset + pageSize) === 0) continue;
      this.contentBad[i] = 1;
      if (this.differences.size < MAX_REPORTED) {
        let at = from;
        while (at < pageSize && buf[offset + at] === expected[at]) at++;
        this.differences.set(i, {
          at,
          expected: expected[at] ?? 0,
          actual: buf[offset + at] ?? 0,
        });
      }
    }
  }

  finish(): RamCheckResult {
    const { pageSize, passByteOffset } = BOOTBLOCK_LAYOUT;
    const { rangeStart, rangeEnd, passCounter } = this.opts;
    const { pages, passBytes } = this;
    if (this.next !== pages) {
      throw new RangeError(`RAM check got ${this.next} of ${pages} pages before finish()`);
    }
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
    let badPages = 0;
    const firstBad: RamBadByte[] = [];
    for (let i = 0; i < pages; i++) {
      const want = i < split ? upper : lower;
      const passByteBad = passBytes[i] !== want;
      if (!passByteBad && this.contentBad[i] === 0) continue;
      badPages++;
      if (firstBad.length >= MAX_REPORTED) continue;
      const address = rangeStart + i * pageSize;
      const difference = this.differences.get(i);
      if (passByteBad || !difference) {
        firstBad.push({
          address: address + passByteOffset,
          expected: want,
          actual: passBytes[i] ?? 0,
        });
      } else {
        firstBad.push({
          address: address + difference.at,
          expected: difference.expected,
          actual: difference.actual,
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
export function readBootblockStatus(
  mem: Uint8Array,
  base: number,
  arch: QemuArch = "x86_64",
): BootblockStatus | undefined {
  const { statusMagic } = BOOTBLOCK_LAYOUT;
  const { statusAddress, passCounterAddress } = bootblockArch(arch);
  const at = statusAddress - base;
  if (at < 0 || passCounterAddress + 8 - base > mem.length) return undefined;
  const magic = new TextDecoder().decode(mem.subarray(at, at + statusMagic.length));
  if (magic !== statusMagic) return undefined;
  const view = new DataView(mem.buffer, mem.byteOffset + passCounterAddress - base, 8);
  return { passCounter: Number(view.getBigUint64(0, true)) };
}

/** Small enough to stay cache-warm and fault in once; large enough that syscalls do not count. */
const STREAM_CHUNK = 4 * MiB;

/**
 * checkBootblockRam over a guest RAM file without holding the range in memory: read through one
 * reused buffer and checked as it arrives. `opts.base` is the guest-physical address of file
 * offset 0 (0 for a memory-backend-file or a pmemsave dump taken from address 0).
 */
export async function checkBootblockRamFile(
  path: string,
  opts: RamCheckOptions,
): Promise<RamCheckResult> {
  const { base, rangeStart, rangeEnd } = opts;
  const checker = new BootblockRamChecker(opts);
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    if (rangeStart < base || rangeEnd - base > size) {
      throw new RangeError(
        `RAM check range ${hex(rangeStart)}..${hex(rangeEnd)} is not inside guest RAM file ${path} (${size} bytes from ${hex(base)})`,
      );
    }
    const buf = Buffer.allocUnsafe(Math.min(STREAM_CHUNK, rangeEnd - rangeStart));
    for (let at = rangeStart - base; at < rangeEnd - base; ) {
      const want = Math.min(buf.length, rangeEnd - base - at);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await handle.read(buf, got, want - got, at + got);
        if (bytesRead === 0) throw new Error(`guest RAM file ${path} ended at ${hex(at + got)}`);
        got += bytesRead;
      }
      checker.update(buf.subarray(0, want));
      at += want;
    }
    return checker.finish();
  } finally {
    await handle.close();
  }
}
