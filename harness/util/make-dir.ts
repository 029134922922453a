// mkdir -p that always ends. Node 20's own `mkdir(..., { recursive: true })` loops forever on
// some paths (e.g. /proc/nope: ENOENT for the leaf, the parent exists), which hung the CLI; this
// one climbs at most once per path component and reports the first real error.

import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";

export async function makeDir(dir: string): Promise<void> {
  try {
    await mkdir(dir);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      if ((await stat(dir)).isDirectory()) return;
      throw error;
    }
    const parent = dirname(dir);
    if (code !== "ENOENT" || parent === dir) throw error;
    await makeDir(parent);
  }
  // The parent exists now: a second failure is the real one.
  await mkdir(dir).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code === "EEXIST" && (await stat(dir)).isDirectory()) return;
    throw error;
  });
}
