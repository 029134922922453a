import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { sampleRun } from "./fixture.ts";
import { loadRun, RunFileError, saveRun, slugify } from "./run-artefacts.ts";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "qmt-runs-"));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("run artefacts", () => {
  test("slugify makes file names of test names", () => {
    expect(slugify("precopy over tcp completes [7.2, tcg]")).toBe(
      "precopy-over-tcp-completes-7-2-tcg",
    );
    expect(slugify("!!!")).toBe("run");
    expect(slugify("a".repeat(300))).toHaveLength(100);
  });

  test("save then load gives the same record", async () => {
    const dir = join(await tempDir(), "runs");
    const run = sampleRun();
    const path = await saveRun(dir, run, "one");
    expect(path).toBe(join(dir, "one.json"));
    expect(await loadRun(path)).toEqual(run);
  });

  test("loading something else says what it is and what was expected", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "x.json"), '{"name": "x"}');
    await writeFile(join(dir, "bad.json"), "{nope");
    await expect(loadRun(join(dir, "x.json"))).rejects.toThrow(
      /"format" is undefined, expected "qemu-migtest-run\/1"/,
    );
    await expect(loadRun(join(dir, "bad.json"))).rejects.toThrow(/is not JSON/);
    await expect(loadRun(join(dir, "missing.json"))).rejects.toBeInstanceOf(RunFileError);
    const noTimeline = { ...sampleRun(), timeline: { startedAt: "", entries: null } };
    await writeFile(join(dir, "t.json"), JSON.stringify(noTimeline));
    await expect(loadRun(join(dir, "t.json"))).rejects.toThrow(/no timeline entries/);
  });
});
