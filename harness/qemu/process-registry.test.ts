import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { ownedDirs, sweepDeadOwners } from "./process-registry.ts";

const made: string[] = [];
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

function parent(): string {
  const d = mkdtempSync(join(tmpdir(), "registry-test-"));
  made.push(d);
  return d;
}

function owned(dir: string, owner: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, ".qmt-owner"), `${owner}\n`);
  return dir;
}

// This process with another start time: the PID was reused, so its owner is gone.
const reusedPid = `${process.pid} 1`;

describe("owned run dirs", () => {
  test("found at the top and inside qmt-* run roots, with the PID that owns them", () => {
    const p = parent();
    owned(join(p, "a"), "41 7");
    owned(join(p, "qmt-root", "b"), "42 8");
    owned(join(p, "other", "c"), "43 9"); // not a run root: not walked
    const roots: string[] = [];
    const found = ownedDirs(p, (r) => roots.push(r));
    expect(found.map((d) => [d.dir, d.ownerPid]).sort()).toEqual([
      [join(p, "a"), 41],
      [join(p, "qmt-root", "b"), 42],
    ]);
    expect(roots).toEqual([join(p, "qmt-root")]);
  });

  test("the sweep removes dead owners' dirs and old empty run roots, and keeps live ones", () => {
    const p = parent();
    const dead = owned(join(p, "dead"), reusedPid);
    const deadInRoot = owned(join(p, "qmt-killed", "dead"), reusedPid);
    const live = owned(join(p, "qmt-live", "mine"), "");
    // An owner file with just a PID: alive while that PID runs.
    writeFileSync(join(live, ".qmt-owner"), `${process.pid}\n`);
    const fresh = join(p, "qmt-fresh");
    mkdirSync(fresh);
    mkdirSync(join(p, "qmt-old"));
    const old = new Date(Date.now() - 120_000);
    utimesSync(join(p, "qmt-old"), old, old);
    const report = sweepDeadOwners(p);
    expect(report.removed.map((r) => r.dir).sort()).toEqual(
      [dead, deadInRoot, join(p, "qmt-old")].sort(),
    );
    expect(existsSync(dead) || existsSync(deadInRoot)).toBe(false);
    expect(existsSync(live)).toBe(true);
    // Empty but younger than a minute: a run that is just starting (and qmt-killed, emptied by
    // this sweep, goes in the next one).
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(join(p, "qmt-killed"))).toBe(true);
  });
});
