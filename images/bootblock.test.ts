import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));

// One rebuild test per image: scripts/build-images builds just that one (--x86 / --aarch64) into
// a temp dir, compared byte for byte with the committed file. Skipped, with the reason, only when
// that image's binutils are missing.
const images = [
  {
    name: "images/bootblock.bin",
    flag: "--x86",
    tools: ["as", "ld", "objcopy"],
    package: "binutils",
  },
  {
    name: "images/bootblock-aarch64.bin",
    flag: "--aarch64",
    tools: ["aarch64-linux-gnu-as", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-objcopy"],
    package: "binutils-aarch64-linux-gnu",
  },
];

for (const image of images) {
  const missing = image.tools.filter(
    (tool) => spawnSync(tool, ["--version"], { stdio: "ignore" }).status !== 0,
  );
  const skipped =
    missing.length > 0 ? ` (skipped: ${image.package} missing: ${missing.join(", ")})` : "";
  test.skipIf(missing.length > 0)(
    `scripts/build-images rebuilds ${image.name} byte for byte${skipped}`,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), "bootblock-build-"));
      try {
        const out = join(dir, "image.bin");
        const build = spawnSync("bash", [join(root, "scripts/build-images"), image.flag, out], {
          encoding: "utf8",
        });
        expect(build.status, `build-images failed: ${build.stderr}`).toBe(0);
        const rebuilt = await readFile(out);
        const committed = await readFile(join(root, image.name));
        expect(rebuilt.length).toBe(committed.length);
        // Report the first differing offset rather than two 64 KiB dumps.
        const firstDiff = rebuilt.findIndex((b, i) => b !== committed[i]);
        expect(firstDiff, `${image.name} is stale: run scripts/build-images`).toBe(-1);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
}
