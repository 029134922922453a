import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import {
  type InfoMigrateFixture,
  loadInfoMigrateFixtures,
} from "../checks/info-migrate-fixture.ts";
import { MiB } from "../util/units.ts";
import { compareWithQmp } from "./compare-qmp.ts";
import { detectInfoMigrateFormat, parseInfoMigrate } from "./info-migrate.ts";
import type { HmpMigrationInfo } from "./migration-info.ts";
import { formatSizeToStr } from "./size.ts";

// Captured from real QEMUs by scripts/capture-info-migrate.ts; their names, phases and
// completeness are checked in info-migrate-fixture.test.ts.
const FIXTURE_DIR = fileURLToPath(new URL("../fixtures/info-migrate/", import.meta.url));
// And the feature families' snapshots (multifd, xbzrle, auto-converge), named with their family.
const FAMILY_DIR = `${FIXTURE_DIR}families/`;
const fixtures = [
  ...loadInfoMigrateFixtures(FIXTURE_DIR),
  ...(existsSync(FAMILY_DIR)
    ? loadInfoMigrateFixtures(FAMILY_DIR).map((f) => ({ ...f, file: `families/${f.file}` }))
    : []),
];

/** The layout QEMU switched to in 10.1, used only to check detection against the real capture. */
function expectedFormat(f: InfoMigrateFixture, text: string): string {
  if (text.trim() === "") return "empty";
  const [major = 0, minor = 0] = f.qemu.split(".").map(Number);
  return major > 10 || (major === 10 && minor >= 1) ? "sectioned" : "flat";
}

/** Every captured text of every fixture: the plain `info migrate`, and `-a` where captured. */
const texts = fixtures.flatMap((f) => [
  { ...f, variant: "hmp", text: f.hmp },
  ...(f.hmpAll === undefined ? [] : [{ ...f, variant: "hmpAll", text: f.hmpAll }]),
]);

const byName = (name: string) => {
  const f = fixtures.find((x) => x.file.endsWith(name));
  if (!f) throw new Error(`fixture *${name} missing`);
  return f;
};
const versions = [...new Set(fixtures.map((f) => f.qemu))];
const sectionedWithRam = fixtures.filter(
  (f) => f.qmp.ram !== undefined && expectedFormat(f, f.hmp) === "sectioned",
);

describe.each(texts)("$file ($variant)", (f) => {
  test("parses with no unknown lines", () => {
    expect(parseInfoMigrate(f.text).unknownLines).toEqual([]);
  });

  test("format detected from the text", () => {
    expect(detectInfoMigrateFormat(f.text)).toBe(expectedFormat(f, f.text));
    expect(parseInfoMigrate(f.text).format).toBe(expectedFormat(f, f.text));
  });

  test("agrees with the query-migrate snapshot taken next to it", () => {
    const live = f.phase === "active";
    expect(compareWithQmp(parseInfoMigrate(f.text), f.qmp, { live })).toEqual([]);
  });

  test("status and RAM presence mirror QMP", () => {
    const hmp = parseInfoMigrate(f.text);
    expect(hmp.status).toBe(f.qmp.status);
    expect(hmp.ram === undefined).toBe(f.qmp.ram === undefined);
  });
});

describe.skipIf(sectionedWithRam.length === 0)(
  "sectioned sizes (skipped: no sectioned fixture with RAM statistics captured)",
  () => {
    test.each(sectionedWithRam.filter((f) => f.phase !== "active"))(
      "$file: every size is what size_to_str() prints for the QMP value",
      (f) => {
        const ram = parseInfoMigrate(f.hmp).ram;
        const q = f.qmp.ram;
        expect(q).toBeDefined();
        if (!q || !ram) return;
        expect(ram.total?.text).toBe(formatSizeToStr(q.total));
        expect(ram.transferred?.text).toBe(formatSizeToStr(q.transferred));
        expect(ram.remaining?.text).toBe(formatSizeToStr(q.remaining));
        expect(ram.pageSize?.text).toBe(formatSizeToStr(q["page-size"]));
      },
    );
  },
);

describe("mutated fixtures are caught", () => {
  const completed = byName(`${versions[0]}-source-completed.json`);

  test.each(versions)("%s: a changed status", (v) => {
    const f = byName(`${v}-source-completed.json`);
    const text = f.hmp.replace(/completed/, "cancelled");
    expect(text).not.toBe(f.hmp);
    const diffs = compareWithQmp(parseInfoMigrate(text), f.qmp);
    expect(diffs.some((d) => d.startsWith("status:") && d.includes('"cancelled"'))).toBe(true);
  });

  test.each(versions)("%s: an extra line QEMU might add", (v) => {
    const f = byName(`${v}-source-completed.json`);
    const extra = f.hmp.includes("RAM info:")
      ? "  Brand New (x):\tfoo=1"
      : "brand new counter: 7 pages";
    const text = f.hmp.replace(/\r?\n$/, `\r\n${extra}\r\n`);
    expect(parseInfoMigrate(text).unknownLines).toEqual([extra]);
  });

  test.each(versions)("%s: a known line with a value that does not parse", (v) => {
    const f = byName(`${v}-source-completed.json`);
    for (const pattern of [/(total time: \d+|total=\d+)/, /(clear-bitmap-shift: \d+)/]) {
      // The globals line only shows with `-a` in the sectioned layout.
      const source = pattern.test(f.hmp) ? f.hmp : (f.hmpAll ?? "");
      if (!pattern.test(source)) continue;
      const text = source.replace(pattern, "$1x");
      const changed = `${pattern.exec(source)?.[1]}x`;
      const bad = text.split(/\r?\n/).find((l) => l.includes(changed));
      expect(bad).toBeDefined();
      expect(parseInfoMigrate(text).unknownLines, String(pattern)).toEqual([bad]);
    }
  });

  test.each(versions)("%s: a missing line", (v) => {
    const f = byName(`${v}-source-completed.json`);
    const lines = f.hmp.split("\r\n");
    const drop = lines.findIndex((l) => /^(total ram|\s+Sizes):/.test(l));
    expect(drop).toBeGreaterThan(-1);
    lines.splice(drop, 1);
    const diffs = compareWithQmp(parseInfoMigrate(lines.join("\r\n")), f.qmp);
    expect(diffs.some((d) => d.startsWith("ram.total:"))).toBe(true);
  });

  test("a transferred count outside the printed precision", () => {
    const qmp = structuredClone(completed.qmp);
    const ram = qmp.ram;
    expect(ram).toBeDefined();
    if (!ram) return;
    const printed = parseInfoMigrate(completed.hmp).ram?.transferred;
    expect(printed).toBeDefined();
    if (!printed) return;
    ram.transferred = printed.max + 1;
    const diffs = compareWithQmp(parseInfoMigrate(completed.hmp), qmp);
    expect(diffs).toEqual([
      `ram.transferred: HMP "${printed.text}" (${printed.min}..${printed.max} bytes) but QMP ${printed.max + 1}`,
    ]);
  });

  test("live mode skips moving values but not presence", () => {
    const f = byName(`${versions[0]}-source-active.json`);
    const qmp = structuredClone(f.qmp);
    if (!qmp.ram) throw new Error("active fixture without ram");
    qmp.ram.transferred += 10 * MiB;
    const hmp = parseInfoMigrate(f.hmp);
    expect(compareWithQmp(hmp, qmp, { live: true })).toEqual([]);
    expect(
      compareWithQmp(hmp, qmp, { live: false }).some((d) => d.startsWith("ram.transferred:")),
    ).toBe(true);
    const noRam: HmpMigrationInfo = { ...hmp, ram: undefined };
    expect(compareWithQmp(noRam, qmp, { live: true })).toContain(
      "ram: QMP has ram statistics but HMP shows no RAM lines",
    );
    const { "expected-downtime": _dropped, ...withoutExpected } = qmp;
    expect(
      compareWithQmp(hmp, withoutExpected, { live: true }).some((d) =>
        d.startsWith("expected-downtime:"),
      ),
    ).toBe(true);
  });
});

describe("layout details", () => {
  const sectionedTexts = texts.filter((t) => detectInfoMigrateFormat(t.text) === "sectioned");
  test.skipIf(sectionedTexts.length === 0)(
    "sectioned text reads the same with tabs turned into spaces (skipped: no sectioned capture)",
    () => {
      for (const f of sectionedTexts) {
        // Socket URIs sit behind a tab on purpose, so leave those lines alone.
        const spaced = f.text.replace(/^(?!\t)(.*)$/gm, (l) => l.replace(/\t/g, "    "));
        expect(parseInfoMigrate(spaced), f.file).toEqual(parseInfoMigrate(f.text));
      }
    },
  );

  test("empty text", () => {
    expect(detectInfoMigrateFormat("")).toBe("empty");
    expect(parseInfoMigrate("\r\n")).toEqual({ format: "empty", unknownLines: [] });
  });

  test("a line repeated in a known block is not silently merged", () => {
    const f = byName(`${versions[0]}-source-completed.json`);
    const line = f.hmp.split("\r\n").find((l) => /^(duplicate| {4}Page Types):/.test(l));
    expect(line).toBeDefined();
    const text = `${f.hmp}${line}\r\n`;
    expect(parseInfoMigrate(text).unknownLines).toEqual([line]);
  });
});

const withRemaining = fixtures.filter((f) => f.qmp.remaining !== undefined);

describe.skipIf(withRemaining.length === 0)(
  "top-level Remaining: (11.1+; skipped: no capture has a top-level remaining)",
  () => {
    test.each(withRemaining)("$file: printed, bounded, and missed when QMP disagrees", (f) => {
      const hmp = parseInfoMigrate(f.hmp);
      const printed = hmp.remaining;
      expect(printed?.text).toBe(formatSizeToStr(f.qmp.remaining as number));
      if (!printed) return;
      const outside = { ...f.qmp, remaining: printed.max + 1 };
      expect(compareWithQmp(hmp, outside)).toContain(
        `remaining: HMP "${printed.text}" (${printed.min}..${printed.max} bytes) but QMP ${printed.max + 1}`,
      );
      const { remaining: _gone, ...withoutRemaining } = f.qmp;
      expect(compareWithQmp(hmp, withoutRemaining, { live: true })).toEqual([
        `remaining: HMP shows "${printed.text}" (${printed.min}..${printed.max} bytes) but QMP has no such member`,
      ]);
    });
  },
);
