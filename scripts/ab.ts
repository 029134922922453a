// A/B a patch: npx tsx scripts/ab.ts --base 10.2.2 --patch FILE [...] (see --help).
// The same command as `qemu-migtest ab` (harness/cli/ab.ts).

import { main } from "../harness/cli/main.ts";

process.exitCode = await main(["ab", ...process.argv.slice(2)]);
