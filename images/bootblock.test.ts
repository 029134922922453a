import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const missing = ["as", "ld", "objcopy"].filter(
  (tool) => spawnSync(tool, ["--version"], { stdio: "ignore" }).status !== 0,
);

test.skipIf(missing.length > 0)(
  `scripts/build-images rebuilds images/bootblock.bin byte for byte${missing.length > 0 ? ` (skipped: binutils missing: ${missing.join(", ")})` : ""}`,
  async () => {
    const dir = await mkdtemp(join(tmpdir(), "bootblock-build-"));
    try {
      const out = join(dir, "bootblock.bin");
      const build = spawnSync("bash", [join(root, "scripts/build-images"), out], {
        encoding: "utf8",
      });
      expect(build.status, `build-images failed: ${build.stderr}`).toBe(0);
      const rebuilt = await readFile(out);
      const committed = await readFile(join(root, "images/bootblock.bin"));
      expect(rebuilt.length).toBe(committed.length);
      // Report the first differing offset rather than two 64 KiB dumps.
      const firstDiff = rebuilt.findIndex((b, i) => b !== committed[i]);
      expect(firstDiff, "images/bootblock.bin is stale: run scripts/build-images").toBe(-1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);
