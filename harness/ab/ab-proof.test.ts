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
// Debian's archive moves on: 10.2.2 while sid serves it, else the newest 10.2.x, else 10.x, that
// the patches apply to (scripts/build-qemu tries them in this order and says which it took).
const DEBIAN = "10.2.2,10.2,10";

describe.skipIf(!PROOF)(
  PROOF
    ? "A/B proof on Debian 10.2.2"
    : "A/B proof on Debian 10.2.2 (skipped: set QEMU_MIGTEST_AB_PROOF=1, i.e. npm run ab:proof; it builds QEMU)",
  () => {
    test("the forward-ported patch: new schema member, QMP member on the source while active, new HMP line, remaining suite passes", {
      timeout: 3_600_000,
    }, async () => {
      const { report, files } = await runAb({
        base: { debian: DEBIAN },
        patches: [{ file: join(PATCHES, "system-wide-remaining-10.2.2.patch") }],
        outDir: join(OUT, "system-wide-remaining"),
        log,
      });
      log(`report: ${files.html}`);
      expect(report.base.version).toMatch(/^10\./);
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
        base: { debian: DEBIAN },
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

    const series = (...names: string[]) =>
      names.map((n) => ({ file: join(PATCHES, `destination-ram-stats-10.2.2-${n}.patch`) }));
    const destinationVerdicts = (r: Awaited<ReturnType<typeof runAb>>["report"]) => ({
      stats: r.verdicts.find((v) => v.name === "destination statistics"),
      hmp: r.verdicts.find((v) => v.name === "info migrate agrees with query-migrate"),
    });

    test("destination-ram-stats as posted (our 1/2 + the forward-ported 2/2): the schema probe, the patch's figures and formulas hold, and HMP still prints the source-only members the patch drops from QMP", {
      timeout: 3_600_000,
    }, async () => {
      const { report } = await runAb({
        base: { debian: DEBIAN },
        patches: series("1-counters", "2"),
        outDir: join(OUT, "destination-ram-stats"),
        log,
      });
      expect(report.schemaChanges.map((c) => c.text)).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/dirty-sync-count.*optional/),
          expect.stringMatching(/precopy-bytes.*optional/),
        ]),
      );
      expect(report.migrateChanges.map((c) => `${c.kind} ${c.side} ${c.phase} ${c.what}`)).toEqual(
        expect.arrayContaining([
          "member-appears destination completed ram",
          "member-appears destination completed total-time",
        ]),
      );
      // "source output is unchanged", says the patch; after completion the source's
      // dirty-pages-rate (0 until now) is gone: has_dirty_pages_rate is set only while running.
      expect(
        report.migrateChanges.map((c) => `${c.kind} ${c.side} ${c.phase} ${c.what}`),
      ).toContain("member-vanishes source completed ram.dirty-pages-rate");
      const { stats, hmp } = destinationVerdicts(report);
      expect(stats).toMatchObject({ base: "absent", patched: "pass" });
      // The regression the harness finds in the patch as posted: misleading zeros on HMP.
      expect(hmp?.patched).toBe("fail");
      for (const member of [
        "precopy-bytes",
        "postcopy-bytes",
        "multifd-bytes",
        "dirty-sync-count",
      ]) {
        expect(hmp?.details.patched?.join("\n")).toMatch(
          new RegExp(
            `^destination, phase completed, snapshot \\d+: ram\\.${member}: HMP shows (?:"0 B" \\(0 bytes\\)|0) but QMP has no such member$`,
            "m",
          ),
        );
      }
      expect(report.ok).toBe(false);
    });

    test("with the suggested HMP follow-up (3/2) the series passes every check", {
      timeout: 3_600_000,
    }, async () => {
      const { report } = await runAb({
        base: { debian: DEBIAN },
        patches: series("1-counters", "2", "3-hmp-source-only"),
        outDir: join(OUT, "destination-ram-stats-hmp-fixed"),
        log,
      });
      expect(destinationVerdicts(report).stats).toMatchObject({ base: "absent", patched: "pass" });
      expect(report.failures).toEqual([]);
      expect(report.ok).toBe(true);
    });

    test("a broken 2/2 (normal-bytes in KiB) fails the destination statistics, naming the member, the formula and the values", {
      timeout: 3_600_000,
    }, async () => {
      const { report } = await runAb({
        base: { debian: DEBIAN },
        patches: series("1-counters", "2-wrong-normal-bytes", "3-hmp-source-only"),
        outDir: join(OUT, "destination-ram-stats-wrong-normal-bytes"),
        log,
      });
      const { stats } = destinationVerdicts(report);
      expect(stats).toMatchObject({ base: "absent", patched: "fail" });
      expect(stats?.details.patched).toEqual(
        expect.arrayContaining([
          expect.stringMatching(
            /^destination ram\.normal-bytes \(normal x page-size\) is \d+, expected \d+$/,
          ),
        ]),
      );
      expect(report.ok).toBe(false);
    });
  },
);
