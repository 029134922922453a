// The folders of harness/ are layers, lowest first; a source file may import from its own folder
// or a lower layer only, so each folder can be read (and tested) knowing only what lies below it.
//
// Test files (*.test.ts, *.test-helpers.ts) may import any layer: a test of one layer may use
// another's fixture loaders (hmp's tests read the captured fixtures through
// checks/info-migrate-fixture.ts) or drive a higher one end to end (report's Chromium test runs
// cli/migrate.ts). No file under harness/ may import suites/ or scripts/, which sit above
// everything, and no source file may import a test file. A folder holding source files must have a
// layer; folders of data only (fixtures/, results/ written by tests) have none.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, test } from "vitest";

/** Lowest first. A new folder goes here, and into README's layout. */
const LAYERS = [
  "util",
  "qmp",
  "hmp",
  "qemu",
  "guest",
  "vfio",
  "transport",
  "migration",
  "checks",
  "scenario",
  "report",
  "ab",
  "cli",
] as const;

const HARNESS = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(HARNESS);
const SOURCE = /\.(ts|js|mjs)$/;
const TEST_FILE = /\.test(-helpers)?\.ts$/;
/** Above every layer: harness/ never imports them. */
const ABOVE_HARNESS = ["suites", "scripts"];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === "node_modules" ? [] : sourceFiles(path);
    return SOURCE.test(e.name) && !e.name.endsWith(".d.ts") ? [path] : [];
  });
}

const repoPath = (path: string) => relative(REPO, path);

/** The top folder under harness/ a path lies in; undefined outside harness/ or at its root. */
function folderOf(path: string): string | undefined {
  const parts = relative(HARNESS, path).split("/");
  return parts.length > 1 && parts[0] !== ".." ? parts[0] : undefined;
}

/** The relative specifiers a file imports, re-exports or import()s, resolved to paths. */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((spec) => spec.startsWith("./") || spec.startsWith("../"))
    .map((spec) => resolve(dirname(file), spec));
}

/** What is wrong with one import, or undefined. */
function importProblem(
  file: string,
  target: string,
  layers: readonly string[] = LAYERS,
): string | undefined {
  const what = `${repoPath(file)} imports ${repoPath(target)}`;
  const top = relative(REPO, target).split("/")[0] ?? "";
  if (ABOVE_HARNESS.includes(top)) {
    return `${what}: harness/ must not import ${top}/ (it sits above every layer)`;
  }
  if (TEST_FILE.test(file)) return undefined;
  if (TEST_FILE.test(target)) return `${what}: a source file must not import a test file`;
  const from = folderOf(file);
  const to = folderOf(target);
  if (from === undefined || to === undefined || from === to) return undefined;
  const fromLayer = layers.indexOf(from);
  const toLayer = layers.indexOf(to);
  if (fromLayer < 0 || toLayer < 0) return undefined; // reported by the folder check
  if (toLayer > fromLayer) {
    return `${what}: ${from} (layer ${fromLayer}) must not import ${to} (layer ${toLayer})`;
  }
  return undefined;
}

describe("harness layers", () => {
  const files = sourceFiles(HARNESS);

  test("every folder with source files has a layer, and no source sits at harness/ itself", () => {
    const problems: string[] = [];
    for (const e of readdirSync(HARNESS, { withFileTypes: true })) {
      const path = join(HARNESS, e.name);
      if (e.isDirectory()) {
        const placed = (LAYERS as readonly string[]).includes(e.name);
        if (!placed && sourceFiles(path).length > 0) {
          problems.push(
            `harness/${e.name}/ holds source files but has no layer: place it in LAYERS (harness/layers.test.ts) and in README's layout`,
          );
        }
      } else if (SOURCE.test(e.name) && !TEST_FILE.test(e.name) && statSync(path).isFile()) {
        problems.push(`harness/${e.name} lies in no layer folder: move it into one`);
      }
    }
    expect(problems).toEqual([]);
  });

  test("no import runs back up the layers, or into suites/, scripts/ or a test file", () => {
    const problems = files.flatMap((file) =>
      importsOf(file).flatMap((target) => importProblem(file, target) ?? []),
    );
    expect(problems).toEqual([]);
  });

  test("the check itself: a back-import, a suite import and a test import are named", () => {
    const at = (p: string) => join(REPO, p);
    expect(importProblem(at("harness/qemu/machine.ts"), at("harness/guest/ram-check.ts"))).toBe(
      "harness/qemu/machine.ts imports harness/guest/ram-check.ts: qemu (layer 3) must not import guest (layer 4)",
    );
    expect(importProblem(at("harness/guest/ram-check.ts"), at("harness/qemu/machine.ts"))).toBe(
      undefined,
    );
    expect(importProblem(at("harness/cli/main.ts"), at("suites/migration-test.ts"))).toMatch(
      /harness\/ must not import suites\//,
    );
    expect(importProblem(at("harness/ab/run-ab.ts"), at("harness/ab/x.test-helpers.ts"))).toMatch(
      /must not import a test file/,
    );
    expect(importProblem(at("harness/hmp/x.test.ts"), at("harness/checks/y.ts"))).toBe(undefined);
  });
});
