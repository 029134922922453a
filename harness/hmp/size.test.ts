import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { formatSizeToStr, kbytesToApprox, parseSizeToStr, sizeMatches } from "./size.ts";

/** Deterministic xorshift so a failing value can be reproduced. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** Byte counts spread over every unit, denser near the unit switches (1000 * 1024^k). */
function sampleBytes(count: number, seed: number): number[] {
  const r = rng(seed);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const bits = Math.floor(r() * 53);
    out.push(Math.floor(r() * 2 ** bits));
  }
  for (let k = 0; k <= 4; k++) {
    const edge = 1000 * 1024 ** k;
    for (const d of [-1025, -513, -2, -1, 0, 1, 2, 511, 1024]) {
      if (edge + d >= 0) out.push(edge + d);
    }
  }
  return out;
}

function hasCompiler(): boolean {
  try {
    execFileSync("cc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("formatSizeToStr", () => {
  test("prints the shapes size_to_str() is documented to print", () => {
    expect(formatSizeToStr(0)).toBe("0 B");
    expect(formatSizeToStr(999)).toBe("999 B");
    // 1000 bytes switch to KiB: %0.3g of 0.9765625
    expect(formatSizeToStr(1000)).toBe("0.977 KiB");
    expect(formatSizeToStr(4096)).toBe("4 KiB");
    // 1.125 KiB is an exact tie; glibc rounds half to even
    expect(formatSizeToStr(1152)).toBe("1.12 KiB");
    // 999.5 KiB rounds to 1000 with 3 digits, which %g prints in exponent form
    expect(formatSizeToStr(999.5 * 1024)).toBe("1e+03 KiB");
    expect(formatSizeToStr(2n ** 64n - 1n)).toBe("16 EiB");
  });

  test("rejects what is not a uint64", () => {
    expect(() => formatSizeToStr(-1)).toThrow(RangeError);
    expect(() => formatSizeToStr(1.5)).toThrow(RangeError);
    expect(() => formatSizeToStr(2n ** 64n)).toThrow(RangeError);
  });

  test.skipIf(!hasCompiler())(
    "agrees with C printf on frexp + %0.3g (skipped when no C compiler is installed)",
    () => {
      // An independent oracle: the C library's own printf and frexp, not a port of our code.
      const dir = mkdtempSync(join(tmpdir(), "size-to-str-"));
      try {
        const src = join(dir, "oracle.c");
        writeFileSync(
          src,
          [
            "#include <stdio.h>",
            "#include <math.h>",
            "#include <stdint.h>",
            'static const char *u[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};',
            "int main(void) { unsigned long long v; int e;",
            '  while (scanf("%llu", &v) == 1) {',
            "    frexp(v / (1000.0 / 1024.0), &e); e = (e - 1) / 10;",
            '    printf("%0.3g %sB\\n", (double)v / (double)(1ULL << (e * 10)), u[e]); } }',
          ].join("\n"),
        );
        execFileSync("cc", ["-o", join(dir, "oracle"), src, "-lm"]);
        const values = sampleBytes(5000, 7).map(BigInt);
        values.push(2n ** 64n - 1n, 2n ** 50n * 1000n - 1n, 2n ** 50n * 1000n);
        // Exact decimal ties at the third digit, where the rounding rule shows.
        for (let unit = 1; unit <= 4; unit++) {
          for (const tie of [1.125, 1.375, 2.625, 10.25, 10.75, 100.5, 101.5, 999.5]) {
            values.push(BigInt(tie * 1024 ** unit));
          }
        }
        const c = execFileSync(join(dir, "oracle"), { input: `${values.join("\n")}\n` })
          .toString()
          .trimEnd()
          .split("\n");
        const mismatches = values
          .map((v, i) => ({ v, c: c[i], ts: formatSizeToStr(v) }))
          .filter((m) => m.c !== m.ts);
        expect(mismatches.slice(0, 5)).toEqual([]);
        expect(c).toHaveLength(values.length);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

describe("parseSizeToStr", () => {
  test("bounds are exact for every byte count in a random sample", () => {
    for (const n of sampleBytes(1500, 42)) {
      const text = formatSizeToStr(n);
      const s = parseSizeToStr(text);
      expect(s.text).toBe(text);
      expect(sizeMatches(n, s), `${n} in ${text} [${s.min}, ${s.max}]`).toBe(true);
      expect(formatSizeToStr(s.min)).toBe(text);
      expect(formatSizeToStr(s.max)).toBe(text);
      if (s.min > 0) expect(formatSizeToStr(s.min - 1)).not.toBe(text);
      expect(formatSizeToStr(s.max + 1)).not.toBe(text);
      expect(sizeMatches(s.min - 1, s)).toBe(false);
      expect(sizeMatches(s.max + 1, s)).toBe(false);
    }
  });

  test("consecutive byte counts: each printed text covers exactly its own run", () => {
    // Walk 0..300000 (B, KiB and the switch to MiB) and check every run of equal text.
    let runStart = 0;
    let runText = formatSizeToStr(0);
    for (let n = 1; n <= 1_100_000; n += n < 300_000 ? 1 : 997) {
      const t = formatSizeToStr(n);
      if (t === runText) continue;
      if (n < 300_000) {
        const s = parseSizeToStr(runText);
        expect([s.min, s.max], runText).toEqual([runStart, n - 1]);
      }
      runStart = n;
      runText = t;
    }
  });

  test("`bytes` is the printed number times its unit", () => {
    expect(parseSizeToStr("4.02 GiB").bytes).toBe(Math.round(4.02 * 2 ** 30));
    expect(parseSizeToStr("0 B")).toEqual({ bytes: 0, min: 0, max: 0, text: "0 B" });
    expect(parseSizeToStr("1e+03 KiB").bytes).toBe(1000 * 1024);
  });

  test("rejects text size_to_str() never prints", () => {
    for (const bad of ["1.0 KiB", "1000 B", "0.5 KiB", "4 GB", "4.020 GiB", "-1 B", "4  KiB", ""]) {
      expect(() => parseSizeToStr(bad), bad).toThrow(SyntaxError);
    }
  });
});

describe("kbytesToApprox", () => {
  test("covers exactly the byte counts whose `>> 10` is N", () => {
    for (const n of sampleBytes(500, 3)) {
      const k = Math.floor(n / 1024);
      const a = kbytesToApprox(k);
      expect(sizeMatches(n, a)).toBe(true);
      expect(Math.floor(a.min / 1024)).toBe(k);
      expect(Math.floor(a.max / 1024)).toBe(k);
      expect(Math.floor((a.min - 1) / 1024)).not.toBe(k);
      expect(Math.floor((a.max + 1) / 1024)).not.toBe(k);
    }
    expect(kbytesToApprox(4).text).toBe("4 kbytes");
  });
});
