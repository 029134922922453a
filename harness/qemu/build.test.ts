import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  buildHash,
  buildQemuArgs,
  checkPatches,
  parseBuildInfo,
  parseSourceSpec,
  QemuBuildError,
} from "./build.ts";

const FIXTURE = new URL("../fixtures/patches/system-wide-remaining-10.2.2.patch", import.meta.url)
  .pathname;

// A tiny "QEMU tree": only what build-qemu checks (VERSION, configure) and one file to patch.
const ORIGINAL = [
  "line 1",
  "line 2",
  "line 3",
  "line 4",
  "line 5",
  "line 6",
  "line 7",
  "line 8",
  "line 9",
  "line 10",
];

function unifiedDiff(file: string, hunks: string): string {
  return `diff --git a/${file} b/${file}\n--- a/${file}\n+++ b/${file}\n${hunks}`;
}

// Hunk 1 adds after line 2; hunk 2 changes line 9.
const GOOD = unifiedDiff(
  "migration/demo.c",
  "@@ -1,3 +1,4 @@\n line 1\n line 2\n+added\n line 3\n@@ -8,3 +9,3 @@\n line 8\n-line 9\n+line nine\n line 10\n",
);
// The same with hunk 2 against text the tree does not have.
const STALE = GOOD.replace(
  " line 8\n-line 9\n+line nine\n line 10\n",
  " line 8\n-line 9 old\n+line nine\n line 10\n",
);

let dir: string;
let tree: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "qemu-build-test-"));
  tree = join(dir, "tree");
  await mkdir(join(tree, "migration"), { recursive: true });
  await writeFile(join(tree, "VERSION"), "10.2.2\n");
  await writeFile(join(tree, "configure"), "#!/bin/sh\n");
  await writeFile(join(tree, "migration", "demo.c"), `${ORIGINAL.join("\n")}\n`);
  await writeFile(
    join(dir, "good.patch"),
    `From: a@b\nSubject: [PATCH] demo\n\nbody text\n---\n demo.c | 1 +\n\n${GOOD}-- \n2.47.3\n`,
  );
  await writeFile(join(dir, "good.diff"), GOOD);
  await writeFile(join(dir, "stale.patch"), STALE);
  await writeFile(join(dir, "nodiff.patch"), "Subject: words only\n\nno diff here\n");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("build-qemu arguments and BUILDINFO", () => {
  test("a request becomes build-qemu flags, patches in order with their mode", () => {
    expect(
      buildQemuArgs({
        source: { debian: "10.2.2" },
        patches: [{ file: "/p/a.patch" }, { file: "/p/b.patch", mode: "revert" }],
        configureFlags: ["--enable-debug"],
        jobs: 3,
      }),
    ).toEqual([
      "--debian",
      "10.2.2",
      "--patch",
      "/p/a.patch",
      "--revert",
      "/p/b.patch",
      "--configure-flag",
      "--enable-debug",
      "--jobs",
      "3",
    ]);
  });

  test("a path is a tree, a version is a Debian source", () => {
    expect(parseSourceSpec("10.2.2")).toEqual({ debian: "10.2.2" });
    expect(parseSourceSpec("1:10.2.2+ds-1")).toEqual({ debian: "1:10.2.2+ds-1" });
    expect(parseSourceSpec("/home/me/qemu")).toEqual({ tree: "/home/me/qemu" });
    expect(parseSourceSpec("./qemu")).toEqual({ tree: "./qemu" });
  });

  test("BUILDINFO lines are read as key/value, patch files collected", () => {
    const { info, patchFiles } = parseBuildInfo(
      "version 10.2.2 (Debian 1:10.2.2+ds-1)\nrecipe 1\ndebian-version 1:10.2.2+ds-1\npatch-file apply /a.patch\npatch-file revert /b.patch\n",
    );
    expect(info.version).toBe("10.2.2 (Debian 1:10.2.2+ds-1)");
    expect(info["debian-version"]).toBe("1:10.2.2+ds-1");
    expect(patchFiles).toEqual(["apply /a.patch", "revert /b.patch"]);
  });
});

describe("build-qemu cache key (--print-hash, no build)", () => {
  test("stable for the same request; changed by a patch, its mode, or a configure flag", async () => {
    const base = await buildHash({ source: { debian: "10.2.2" } });
    expect(base).toMatch(/^[0-9a-f]{16}$/);
    expect(await buildHash({ source: { debian: "10.2.2" } })).toBe(base);
    const patched = await buildHash({ source: { debian: "10.2.2" }, patches: [{ file: FIXTURE }] });
    const reverted = await buildHash({
      source: { debian: "10.2.2" },
      patches: [{ file: FIXTURE, mode: "revert" }],
    });
    const flagged = await buildHash({
      source: { debian: "10.2.2" },
      configureFlags: ["--enable-debug"],
    });
    expect(new Set([base, patched, reverted, flagged]).size).toBe(4);
  });

  test("only the diff part of a mail counts: the same diff as a mail or bare has one key", async () => {
    const mail = await buildHash({
      source: { debian: "10.2.2" },
      patches: [{ file: join(dir, "good.patch") }],
    });
    const bare = await buildHash({
      source: { debian: "10.2.2" },
      patches: [{ file: join(dir, "good.diff") }],
    });
    expect(mail).toBe(bare);
  });

  test("a file without a diff is refused, by name", async () => {
    await expect(
      buildHash({ source: { debian: "10.2.2" }, patches: [{ file: join(dir, "nodiff.patch") }] }),
    ).rejects.toThrow(/nodiff\.patch contains no diff/);
  });
});

describe("build-qemu --check-patches (dry run on a scratch copy)", () => {
  test("a patch that applies passes, and the tree is left untouched", async () => {
    await checkPatches(tree, [{ file: join(dir, "good.patch") }]);
    expect(await readFile(join(tree, "migration", "demo.c"), "utf8")).toBe(
      `${ORIGINAL.join("\n")}\n`,
    );
  });

  test("patches are checked in order: the second copy of the same patch is 'already applied'", async () => {
    const error = await checkPatches(tree, [
      { file: join(dir, "good.patch") },
      { file: join(dir, "good.diff") },
    ]).catch((e) => e);
    expect(error).toBeInstanceOf(QemuBuildError);
    expect(error.message).toContain(`cannot apply ${join(dir, "good.diff")}`);
    expect(error.message).toContain("file migration/demo.c: already applied");
  });

  test("a stale hunk is named: patch file, target file and hunk number", async () => {
    const error = await checkPatches(tree, [{ file: join(dir, "stale.patch") }]).catch((e) => e);
    expect(error).toBeInstanceOf(QemuBuildError);
    expect(error.message).toContain(`cannot apply ${join(dir, "stale.patch")}`);
    expect(error.message).toMatch(/file migration\/demo\.c: Hunk #2 FAILED at 9\./);
    expect(error.message).not.toMatch(/Hunk #1 FAILED/);
  });

  test("reverting a patch the tree does not carry fails with the hunk", async () => {
    const error = await checkPatches(tree, [
      { file: join(dir, "good.diff"), mode: "revert" },
    ]).catch((e) => e);
    expect(error).toBeInstanceOf(QemuBuildError);
    expect(error.message).toContain("cannot revert");
    expect(error.message).toContain(
      "file migration/demo.c: not applied in this tree, nothing to revert",
    );
  });
});
