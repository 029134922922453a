// The value grammar both `info migrate` layouts share: numbers with units, sizes, `label: value`
// and `key=value, ...` lines. Every reader returns undefined (or false) rather than guessing, so a
// line it cannot read whole ends up in `unknownLines`.

import type { HmpMigrationInfo, HmpRamInfo, HmpXbzrleInfo } from "./migration-info.ts";
import { type ApproxBytes, kbytesToApprox, parseSizeToStr } from "./size.ts";

/** Reads one line's value into `info`; false when the value is not what the label promises. */
export type Reader = (value: string, info: HmpMigrationInfo) => boolean;

const UINT = /^\d+$/;
const FIXED2 = /^\d+\.\d{2}$/;

export function uint(s: string | undefined): number | undefined {
  return s !== undefined && UINT.test(s) ? Number(s) : undefined;
}

export function fixed2(s: string | undefined): number | undefined {
  return s !== undefined && FIXED2.test(s) ? Number(s) : undefined;
}

/** `N <unit>` with a fixed unit word, e.g. "12 ms", "3 pages". */
export function uintWithUnit(s: string, unit: string): number | undefined {
  const suffix = ` ${unit}`;
  return s.endsWith(suffix) ? uint(s.slice(0, -suffix.length)) : undefined;
}

export function kbytes(s: string): ApproxBytes | undefined {
  const n = uintWithUnit(s, "kbytes");
  return n === undefined ? undefined : kbytesToApprox(n, s);
}

export function size(s: string | undefined): ApproxBytes | undefined {
  if (s === undefined) return undefined;
  try {
    return parseSizeToStr(s);
  } catch {
    return undefined;
  }
}

/** `status` or `status (error text)`. */
export function statusValue(s: string, info: HmpMigrationInfo): boolean {
  const m = /^(\S+)(?: \((.*)\))?$/.exec(s);
  if (!m?.[1]) return false;
  info.status = m[1];
  if (m[2] !== undefined) info.errorDesc = m[2];
  return true;
}

/** A line `label: value` (flat) or `label: \t\tvalue` (sectioned; pasted copies have spaces). */
export function splitLabel(
  line: string,
): { indent: string; label: string; value: string } | undefined {
  const m = /^([ \t]*)([^:]+):(?:[ \t]+(.*))?$/.exec(line);
  if (!m || m[2] === undefined) return undefined;
  return { indent: m[1] ?? "", label: m[2], value: m[3] ?? "" };
}

/** "a=1, b=2" into a map; undefined when a part is not `key=value` or a key repeats. */
function keyValues(s: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  for (const part of s.split(", ")) {
    const m = /^([a-z_]+)=(.+)$/.exec(part);
    if (!m?.[1] || m[2] === undefined || out.has(m[1])) return undefined;
    out.set(m[1], m[2]);
  }
  return out;
}

/**
 * Read `key=value` parts into fields: each known key's reader returns false on a bad value.
 * Returns false when a part is unknown, malformed, or a required key is missing.
 */
export function readKeyValues(
  s: string,
  readers: Record<string, (v: string) => boolean>,
  required: readonly string[],
): boolean {
  const kv = keyValues(s);
  if (!kv) return false;
  let ok = required.every((k) => kv.has(k));
  for (const [k, v] of kv) {
    const read = own(readers, k);
    if (!read?.(v)) ok = false;
  }
  return ok;
}

/** A table entry, never something inherited from Object.prototype ("constructor"...). */
export function own<T>(table: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** Assigns `v` when it was read; false when it was not, so a table entry reads in one line. */
export function set<T>(v: T | undefined, assign: (v: T) => void): boolean {
  if (v === undefined) return false;
  assign(v);
  return true;
}

/** The `ram` group of `info`, created on first use. */
export const ram = (info: HmpMigrationInfo): HmpRamInfo => {
  info.ram ??= {};
  return info.ram;
};
/** The `xbzrle` group of `info`, created on first use. */
export const xbzrle = (info: HmpMigrationInfo): HmpXbzrleInfo => {
  info.xbzrle ??= {};
  return info.xbzrle;
};

/** A migration global: every one QEMU has printed is a switch or a number. */
export const GLOBAL_LINE = /^([a-z][a-z0-9-]*): (on|off|\d+)$/;
