// The main job, kept at its old path: `qemu-migtest migrate` (harness/cli/migrate.ts).
// Usage: npx tsx scripts/migrate.ts [qemu-migtest migrate options]; --help lists them.

import { main } from "../harness/cli/main.ts";

process.exitCode = await main(["migrate", ...process.argv.slice(2)]);
