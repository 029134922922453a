// qemu-migtest ab: validate a patch the way a QEMU developer does: build QEMU with and without
// it, run the same migration scenario on both, and report what changed.

import { resolve } from "node:path";
import { renderAbText } from "../ab/ab-report.ts";
import { runAb as runAbBuilds } from "../ab/run-ab.ts";
import { DEFAULT_AB_SCENARIO } from "../ab/scenario.ts";
import { parseSourceSpec, QemuBuildError, type QemuPatch } from "../qemu/build.ts";
import { integer, oneOf, parseFlags, UsageError } from "./args.ts";

export const abOptions = {
  base: { type: "string" },
  patch: { type: "string", multiple: true },
  revert: { type: "string", multiple: true },
  "configure-flag": { type: "string", multiple: true },
  jobs: { type: "string" },
  accel: { type: "string" },
  transport: { type: "string" },
  "max-bandwidth": { type: "string" },
  "active-snapshots": { type: "string" },
  out: { type: "string", short: "o" },
  quiet: { type: "boolean", short: "q" },
  help: { type: "boolean", short: "h" },
} as const;

const abUsage = `usage: qemu-migtest ab --base <tree|version> --patch FILE [--patch FILE]... [options]

Builds qemu-system-x86_64 twice with scripts/build-qemu, from the same source: the base as it
is, and the base with the patches; runs the same migration scenario on both (bootblock guest,
same parameters and transport; slowed with max-bandwidth so the active phase is sampled); writes
the differences: query-qmp-schema, query-migrate members per phase and side, HMP info migrate
lines per phase and side, suite verdicts.

  --base SPEC            a Debian qemu source version (10.2.2, 1:10.2.2+ds-1, or a preference
                         list such as 10.2.2,10.2,10: the first served one the patches apply to)
                         or a QEMU tree path
  --patch FILE           a git-format mail or -p1 diff to apply (repeatable, in order)
  --revert FILE          a patch to revert instead (repeatable)
  --configure-flag F     extra configure flag for both builds (repeatable)
  --jobs N               ninja -jN (default 2)
  --accel auto|kvm|tcg   default ${DEFAULT_AB_SCENARIO.accel}
  --transport tcp|unix   default ${DEFAULT_AB_SCENARIO.transport}
  --max-bandwidth BYTES  source max-bandwidth while sampling active (default ${DEFAULT_AB_SCENARIO.maxBandwidth})
  --active-snapshots N   snapshots per side while active (default ${DEFAULT_AB_SCENARIO.activeSnapshots})
  -o, --out DIR          report directory (default ab-results/): ab-report.{json,html,txt},
                         base-run.{json,html}, patched-run.{json,html}, *-snapshots.json
  -q, --quiet            no progress lines, only the summary

Builds are cached by (source, patches, configure flags) in
\${QEMU_MIGTEST_CACHE:-~/.cache/qemu-migtest}/builds/; a warm run rebuilds nothing.
Exit status: 0 when the patched build passes every check, 1 when it fails one (the report says
which side, phase, snapshot and values disagree) or a build fails, 2 for a bad flag.`;

/** Run \`qemu-migtest ab\`; resolves with the exit status. */
async function runAbCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags("qemu-migtest ab", argv, abOptions);
  if (v.help) {
    console.log(abUsage);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(
      `qemu-migtest ab takes no positional arguments (got ${positionals.join(" ")}); see --help`,
    );
  }
  if (!v.base)
    throw new UsageError("qemu-migtest ab: --base <tree|version> is required (e.g. --base 10.2.2)");
  const patches: QemuPatch[] = [
    ...(v.patch ?? []).map((file) => ({ file, mode: "apply" as const })),
    ...(v.revert ?? []).map((file) => ({ file, mode: "revert" as const })),
  ];
  if (patches.length === 0)
    throw new UsageError("qemu-migtest ab: give at least one --patch FILE (or --revert FILE)");
  const jobs = integer("--jobs", v.jobs);
  const maxBandwidth = integer("--max-bandwidth", v["max-bandwidth"]);
  const activeSnapshots = integer("--active-snapshots", v["active-snapshots"]);
  const outDir = resolve(v.out ?? "ab-results");
  const started = Date.now();
  try {
    const { report, files } = await runAbBuilds({
      base: parseSourceSpec(v.base),
      patches,
      ...(v["configure-flag"] ? { configureFlags: v["configure-flag"] } : {}),
      ...(jobs ? { jobs } : {}),
      scenario: {
        accel: oneOf(
          "--accel",
          v.accel,
          ["auto", "kvm", "tcg"] as const,
          DEFAULT_AB_SCENARIO.accel,
        ),
        transport: oneOf(
          "--transport",
          v.transport,
          ["tcp", "unix"] as const,
          DEFAULT_AB_SCENARIO.transport,
        ),
        ...(maxBandwidth ? { maxBandwidth } : {}),
        ...(activeSnapshots ? { activeSnapshots } : {}),
      },
      outDir,
      ...(v.quiet ? {} : { log: (line: string) => console.error(`ab: ${line}`) }),
    });
    console.log(renderAbText(report));
    console.log(`\nreport: ${files.html}\n        ${files.json}\n        ${files.text}`);
    console.log(`A/B run took ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return report.ok ? 0 : 1;
  } catch (error) {
    if (error instanceof QemuBuildError) {
      console.error(`qemu-migtest ab: build failed:\n${error.message}`);
      return 1;
    }
    throw error;
  }
}

/** The subcommand entry the CLI registers as \`ab\`. */
export async function runAb(argv: string[]): Promise<number> {
  return runAbCommand(argv);
}
