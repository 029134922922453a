// A/B a patch: npx tsx scripts/ab.ts --base 10.2.2 --patch FILE [...] (see --help).
// The same command as `qemu-migtest ab`.

import { runAb } from "../harness/cli/ab.ts";
import { UsageError } from "../harness/cli/args.ts";

try {
  process.exitCode = await runAb(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    console.error(error.message);
    process.exitCode = 2;
  } else {
    throw error;
  }
}
