import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { makeDir } from "./make-dir.ts";

const root = mkdtempSync(join(tmpdir(), "mkdir-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("makeDir", () => {
  test("creates missing parents and accepts an existing directory", async () => {
    const dir = join(root, "a", "b", "c");
    await makeDir(dir);
    await makeDir(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
  });

  test("a path under /proc fails at once instead of looping (Node's recursive mkdir hangs there)", async () => {
    await expect(makeDir("/proc/qemu-migtest-nope/x")).rejects.toMatchObject({ code: "ENOENT" });
  });

  test("a file in the way is an error", async () => {
    const file = join(root, "file");
    writeFileSync(file, "");
    await expect(makeDir(file)).rejects.toMatchObject({ code: "EEXIST" });
    await expect(makeDir(join(file, "sub"))).rejects.toMatchObject({ code: "ENOTDIR" });
  });
});
