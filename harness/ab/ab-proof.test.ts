// The A/B proof on the seed: Debian's QEMU 10.2.2 against itself plus the forward-ported
// system-wide-remaining patch (harness/fixtures/patches/), then against a broken copy of that
// patch whose HMP line prints the wrong value. Builds QEMU (about 4 minutes cold on an idle
// 2-core machine, seconds when cached), so it only runs when asked: npm run ab:proof.

import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { runAb } from "./run-ab.ts";

const PROOF = process.env.QEMU_MIGTEST_AB_PROOF === "1";
const PATCHES = new URL("../fixtures/patches/", import.meta.url).pathname;
const OUT = join(process.env.QEMU_MIGTEST_RESULTS ?? "results", "ab");
const log = (line: string) => console.log(`ab: ${line}`);

describe.skipIf(!PROOF)(
  PROOF
    ? "A/B proof on Debian 10.2.2"
    : "A/B proof on Debian 10.2.2 (skipped: set QEMU_MIGTEST_AB_PROOF=1, i.e. npm run ab:proof; it builds QEMU)",
  () => {
    test("the forward-ported patch: new schema member, QMP member on the source while active, new HMP line, remaining suite passes", {
      timeout: 3_600_000,
    }, async () => {
      const { report, files } = await runAb({
        base: { debian: "10.2.2" },
        patches: [{ file: join(PATCHES, "system-wide-remaining-10.2.2.patch") }],
        outDir: join(OUT, "system-wide-remaining"),
        log,
      });
      log(`report: ${files.html}`);
      expect(report.base.version).toMatch(/^10\.2\.2\b/);
      expect(report.schemaChanges.map((c) => c.text)).toContain(
        "added: command query-migrate: return.remaining (int, optional)",
      );
      expect(
        report.migrateChanges.map((c) => `${c.kind} ${c.side} ${c.phase} ${c.what}`),
      ).toContain("member-appears source active remaining");
      expect(report.hmpChanges.map((c) => `${c.kind} ${c.side} ${c.phase} ${c.what}`)).toContain(
        "hmp-appears source active Remaining",
      );
      const remaining = report.verdicts.find((v) => v.name === "remaining");
      expect(remaining).toMatchObject({ base: "absent", patched: "pass", differs: true });
      expect(report.failures).toEqual([]);
      expect(report.ok).toBe(true);
    });

    test("the broken copy (HMP prints remaining >> 10): the A/B run and the remaining suite fail, saying what disagrees", {
      timeout: 3_600_000,
    }, async () => {
      const { report } = await runAb({
        base: { debian: "10.2.2" },
        patches: [{ file: join(PATCHES, "system-wide-remaining-10.2.2-wrong-hmp.patch") }],
        outDir: join(OUT, "system-wide-remaining-wrong-hmp"),
        log,
      });
      expect(report.ok).toBe(false);
      const remaining = report.verdicts.find((v) => v.name === "remaining");
      expect(remaining).toMatchObject({ base: "absent", patched: "fail" });
      // Every disagreement has the exact form; at least one is from a plain active round (a round
      // taken as the source switched setup->active disagrees the same way).
      const form =
        /^source, phase (?:[a-z-]+->)?active, snapshot \d+ \(t=\d+ ms\): HMP "Remaining: [\d.]+ KiB" stands for \d+\.\.\d+ bytes, but query-migrate "remaining" was \d+ bytes \([\d.]+ MiB\).*: they disagree; HMP is 0\.0009\d\d times the QMP value$/;
      const details = remaining?.details.patched ?? [];
      expect(details.length).toBeGreaterThan(0);
      for (const d of details) expect(d).toMatch(form);
      expect(details.some((d) => d.startsWith("source, phase active, "))).toBe(true);
      expect(report.failures[0]).toMatch(/^patched build fails "remaining": source, phase /);
    });
  },
);
