// qemu-migtest: the command a QEMU migration developer runs. One subcommand per file.

import { abOptions, runAb } from "./ab.ts";
import { type OptionSpec, UsageError } from "./args.ts";
import { migrateCommand, migrateOptions } from "./migrate.ts";
import { probeCommand, probeOptions } from "./probe.ts";
import { reportCommand, reportOptions } from "./report.ts";
import { testCommand, testOptions } from "./test.ts";

interface Subcommand {
  summary: string;
  options: OptionSpec;
  run: (argv: string[]) => Promise<number>;
}

export const SUBCOMMANDS: Record<string, Subcommand> = {
  probe: {
    summary:
      "the host and each QEMU binary: version, accelerators, KVM, capabilities, parameters, schema features, VFIO",
    options: probeOptions,
    run: probeCommand,
  },
  migrate: {
    summary:
      "one migration between two fresh QEMUs, with live progress, both sides' summary and the RAM check",
    options: migrateOptions,
    run: migrateCommand,
  },
  test: {
    summary: "run the vitest suites, filtered by suite, tag, QEMU binary or accelerator",
    options: testOptions,
    run: testCommand,
  },
  report: {
    summary: "render the HTML report (or a text summary) of a saved run",
    options: reportOptions,
    run: reportCommand,
  },
  ab: {
    summary:
      "build QEMU with and without a patch, run the same migration on both, report the differences",
    options: abOptions,
    run: runAb,
  },
};

export const mainUsage = `usage: qemu-migtest <command> [options]

${Object.entries(SUBCOMMANDS)
  .map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`)
  .join("\n")}

qemu-migtest <command> --help shows each command's options.`;

/** Run the CLI; resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(mainUsage);
    return name === undefined ? 2 : 0;
  }
  const command = SUBCOMMANDS[name];
  if (!command) {
    console.error(
      `qemu-migtest: unknown command "${name}"; valid commands: ${Object.keys(SUBCOMMANDS).join(", ")} (qemu-migtest --help)`,
    );
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message);
      return 2;
    }
    // Harness errors say side, phase and what QEMU printed: their message is the report. A
    // stack only helps for a bug in the harness itself.
    const bug = error instanceof TypeError || error instanceof ReferenceError;
    const text =
      error instanceof Error
        ? bug || process.env.QEMU_MIGTEST_DEBUG
          ? (error.stack ?? error.message)
          : error.message
        : String(error);
    console.error(`qemu-migtest ${name}: ${text}`);
    return 1;
  }
}
