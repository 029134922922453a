// Byte counts as QEMU prints them for humans, and the range of exact values each text stands for.
// size_to_str() (util/cutils.c) picks a base-1024 unit so the number stays below 1000 and prints it
// with "%0.3g"; the old `info migrate` printed `bytes >> 10` followed by "kbytes". Both lose
// precision, so a parsed size is an interval, never a single number.

/**
 * A byte count read from HMP text. `bytes` is the printed number times its unit; every exact
 * count in [min, max] prints as `text` and no other count does. Beyond 2^53 bytes (8 PiB) the
 * bounds are the nearest doubles, not exact integers.
 */
export interface ApproxBytes {
  bytes: number;
  min: number;
  max: number;
  text: string;
}

const IEC_PREFIXES = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] as const;
const UINT64_MAX = (1n << 64n) - 1n;

/** Whether an exact byte count (from QMP, say) is one the HMP text could have come from. */
export function sizeMatches(bytes: number, s: ApproxBytes): boolean {
  return bytes >= s.min && bytes <= s.max;
}

/** Exactly what size_to_str() prints for `bytes` (a uint64), e.g. "4.02 GiB", "0 B", "1e+03 KiB". */
export function formatSizeToStr(bytes: number | bigint): string {
  const val = toUint64(bytes);
  // C converts the uint64 to double before both the unit choice and the division.
  const asDouble = Number(val);
  const unitExp2 = Math.trunc((frexpExponent(asDouble / (1000 / 1024)) - 1) / 10) * 10;
  const prefix = IEC_PREFIXES[unitExp2 / 10];
  if (prefix === undefined) {
    throw new RangeError(`size_to_str has no unit for ${val} bytes`);
  }
  // (double)val / 2^k is exact, so the value to print is the rational BigInt(asDouble) / 2^k.
  return `${formatG3(BigInt(asDouble), 1n << BigInt(unitExp2))} ${prefix}B`;
}

/**
 * Parse text that size_to_str() printed ("4.02 GiB", "0 B") into the interval of byte counts that
 * print exactly so. Throws on text size_to_str() never prints ("4.020 GiB", "4 GB").
 */
export function parseSizeToStr(text: string): ApproxBytes {
  const cached = parsedSizes.get(text);
  if (cached) return { ...cached };
  const m = /^(\d+(?:\.\d+)?(?:e[+-]\d+)?) (B|KiB|MiB|GiB|TiB|PiB|EiB)$/.exec(text);
  if (!m?.[1] || !m[2]) {
    throw new SyntaxError(`not a size_to_str() size: ${JSON.stringify(text)}`);
  }
  const target = sizeTextValue(m[1], m[2]);
  // Printed value grows monotonically with the byte count, so the matching counts are one run.
  const min = firstUint64(0n, UINT64_MAX, (v) => compareRational(printedValue(v), target) >= 0);
  const max = firstUint64(0n, UINT64_MAX, (v) => compareRational(printedValue(v), target) > 0) - 1n;
  if (min > max || formatSizeToStr(min) !== text) {
    throw new SyntaxError(`size_to_str() never prints ${JSON.stringify(text)}`);
  }
  const result: ApproxBytes = {
    bytes: Number(target.num / target.den),
    min: Number(min),
    max: Number(max),
    text,
  };
  parsedSizes.set(text, result);
  return { ...result };
}

/** The old format's `N kbytes`, which is `bytes >> 10`. `text` is the whole value, "N kbytes". */
export function kbytesToApprox(kbytes: number, text = `${kbytes} kbytes`): ApproxBytes {
  return { bytes: kbytes * 1024, min: kbytes * 1024, max: kbytes * 1024 + 1023, text };
}

/** A count HMP printed in plain bytes: exact. */
export function exactBytes(bytes: number, text = `${bytes} bytes`): ApproxBytes {
  return { bytes, min: bytes, max: bytes, text };
}

const parsedSizes = new Map<string, ApproxBytes>();

interface Rational {
  num: bigint;
  den: bigint;
}

function toUint64(bytes: number | bigint): bigint {
  if (typeof bytes === "number" && !Number.isInteger(bytes)) {
    throw new RangeError(`byte count must be an integer, got ${bytes}`);
  }
  const v = BigInt(bytes);
  if (v < 0n || v > UINT64_MAX) throw new RangeError(`byte count out of uint64 range: ${v}`);
  return v;
}

/** The exponent frexp() returns: x = m * 2^e with m in [0.5, 1); 0 for x = 0. */
function frexpExponent(x: number): number {
  if (x === 0) return 0;
  let e = Math.floor(Math.log2(x)) + 1;
  // log2 may be off by one next to a power of two; powers of two are exact doubles.
  while (2 ** (e - 1) > x) e--;
  while (2 ** e <= x) e++;
  return e;
}

/** printf("%0.3g", num / den) with glibc's exact, round-half-to-even conversion. */
function formatG3(num: bigint, den: bigint): string {
  if (num === 0n) return "0";
  let exp10 = floorLog10(num, den);
  let digits = roundHalfEven(scaleByPow10(num, den, 2 - exp10));
  if (digits === 1000n) {
    digits = 100n;
    exp10 += 1;
  }
  const s = digits.toString(); // always three digits here
  if (exp10 < -4 || exp10 >= 3) {
    const mantissa = stripZeros(`${s[0]}.${s.slice(1)}`);
    const sign = exp10 < 0 ? "-" : "+";
    return `${mantissa}e${sign}${String(Math.abs(exp10)).padStart(2, "0")}`;
  }
  const decimals = 2 - exp10;
  const padded = s.padStart(decimals + 1, "0");
  const intPart = padded.slice(0, padded.length - decimals);
  const frac = padded.slice(padded.length - decimals);
  return decimals === 0 ? intPart : stripZeros(`${intPart}.${frac}`);
}

function stripZeros(fixed: string): string {
  return fixed.includes(".") ? fixed.replace(/0+$/, "").replace(/\.$/, "") : fixed;
}

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

/** (num/den) * 10^k as a rational. */
function scaleByPow10(num: bigint, den: bigint, k: number): Rational {
  return k >= 0 ? { num: num * pow10(k), den } : { num, den: den * pow10(-k) };
}

function floorLog10(num: bigint, den: bigint): number {
  let e = num.toString().length - den.toString().length;
  // Adjust until 10^e <= num/den < 10^(e+1).
  for (;;) {
    const low = scaleByPow10(num, den, -e);
    if (low.num < low.den) {
      e--;
      continue;
    }
    const high = scaleByPow10(num, den, -(e + 1));
    if (high.num >= high.den) {
      e++;
      continue;
    }
    return e;
  }
}

function roundHalfEven(r: Rational): bigint {
  const q = r.num / r.den;
  const twiceRest = (r.num % r.den) * 2n;
  if (twiceRest > r.den || (twiceRest === r.den && q % 2n === 1n)) return q + 1n;
  return q;
}

/** The exact value of size_to_str() text, in bytes, as a rational. */
function sizeTextValue(number: string, unit: string): Rational {
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(number);
  if (!m?.[1]) throw new SyntaxError(`bad number ${number}`);
  const frac = m[2] ?? "";
  const exp10 = Number(m[3] ?? 0) - frac.length;
  const unitIndex = IEC_PREFIXES.findIndex((prefix) => `${prefix}B` === unit);
  if (unitIndex < 0) throw new SyntaxError(`bad unit ${unit}`);
  const unitScale = 1n << BigInt(10 * unitIndex);
  const base = scaleByPow10(BigInt(m[1] + frac), 1n, exp10);
  return { num: base.num * unitScale, den: base.den };
}

/** The value, in bytes, of what size_to_str(v) prints. */
function printedValue(v: bigint): Rational {
  const text = formatSizeToStr(v);
  const space = text.indexOf(" ");
  return sizeTextValue(text.slice(0, space), text.slice(space + 1));
}

function compareRational(a: Rational, b: Rational): number {
  const l = a.num * b.den;
  const r = b.num * a.den;
  return l < r ? -1 : l > r ? 1 : 0;
}

/** Smallest v in [lo, hi] with pred(v), for a monotone pred; hi + 1 when there is none. */
function firstUint64(lo: bigint, hi: bigint, pred: (v: bigint) => boolean): bigint {
  let a = lo;
  let b = hi + 1n;
  while (a < b) {
    const mid = (a + b) / 2n;
    if (pred(mid)) b = mid;
    else a = mid + 1n;
  }
  return a;
}
