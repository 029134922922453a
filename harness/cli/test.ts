// `qemu-migtest test`: the vitest suites, selected by suite, tag, QEMU binary and accelerator.
// Filters become vitest arguments and the harness's environment variables; the exit status is
// vitest's.

import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { type OptionSpec, oneOf, parseFlags, UsageError } from "./args.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url));

export const testOptions = {
  suite: { type: "string", multiple: true },
  tag: { type: "string", multiple: true },
  binary: { type: "string", multiple: true },
  accel: { type: "string" },
  shard: { type: "string" },
  results: { type: "string" },
  list: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpec;

const testUsage = `usage: qemu-migtest test [options] [-- vitest options]

Runs the vitest suites (vitest run), one migration pair at a time.

  --suite NAME        a suite: a file of suites/ without .test.ts (precopy, no-leak, ...), or
                      "unit" for every harness/scripts/images unit test; repeatable
  --tag EXPR          vitest --tags-filter: a tag (kvm, vfio, matrix) or an expression such as
                      "!kvm && !vfio"; repeatable (all must hold)
  --binary SPEC       QEMU under test: a path, a command or a matrix name (7.2, 10.0, 11.1);
                      repeatable; sets QEMU_MIGTEST_BINARIES (default: the installed matrix,
                      else qemu-system-x86_64)
  --accel auto|kvm|tcg
                      sets QEMU_MIGTEST_ACCEL
  --shard I/N         run shard I of N (vitest --shard), e.g. one per CI runner
  --results DIR       sets QEMU_MIGTEST_RESULTS: JUnit (DIR/junit.xml) and one run file per
                      migration (DIR/runs/*.json)
  --list              list the suites and tags, run nothing
  -h, --help          this text

Anything after -- goes to vitest unchanged (e.g. -- -t "unix socket").`;

interface TagInfo {
  name: string;
  description?: string;
}

/** Suites by name: suites/<name>.test.ts. */
function listSuites(repo = REPO): string[] {
  return readdirSync(join(repo, "suites"))
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => f.slice(0, -".test.ts".length))
    .sort();
}

/** The tags vitest.config.ts defines (vitest refuses any other). */
async function listTags(): Promise<TagInfo[]> {
  const config = (await import("../../vitest.config.ts")).default as {
    test?: { tags?: TagInfo[] };
  };
  return (config.test?.tags ?? []).map(({ name, description }) => ({
    name,
    ...(description ? { description } : {}),
  }));
}

const UNIT_DIRS = ["harness/", "scripts/", "images/"];

export interface VitestInvocation {
  args: string[];
  env: Record<string, string>;
}

/** Turn the flags into vitest's arguments and environment. */
async function vitestInvocation(argv: string[]): Promise<VitestInvocation | "help" | "list"> {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const passthrough = dash < 0 ? [] : argv.slice(dash + 1);
  const { values: v, positionals } = parseFlags("qemu-migtest test", own, testOptions);
  if (v.help) return "help";
  if (v.list) return "list";
  if (positionals.length > 0) {
    throw new UsageError(
      `qemu-migtest test: unexpected argument "${positionals[0]}"; select suites with --suite NAME, and put vitest options after --`,
    );
  }
  const suites = listSuites();
  const args = ["run"];
  for (const name of v.suite ?? []) {
    if (name === "unit") args.push(...UNIT_DIRS);
    else if (suites.includes(name)) args.push(`suites/${name}.test.ts`);
    else {
      throw new UsageError(`--suite "${name}" is not a suite; valid: unit, ${suites.join(", ")}`);
    }
  }
  if (v.tag?.length) {
    const known = (await listTags()).map((t) => t.name);
    for (const expr of v.tag) {
      for (const word of expr.match(/[A-Za-z0-9_-]+/g) ?? []) {
        if (!known.includes(word)) {
          throw new UsageError(
            `--tag "${expr}": unknown tag "${word}"; valid tags: ${known.join(", ")}`,
          );
        }
      }
      args.push("--tags-filter", expr);
    }
  }
  if (v.shard !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(v.shard);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > Number(m[2])) {
      throw new UsageError(`--shard must be I/N with 1 <= I <= N (e.g. 1/3), not "${v.shard}"`);
    }
    args.push(`--shard=${v.shard}`);
  }
  const env: Record<string, string> = {};
  if (v.binary?.length) env.QEMU_MIGTEST_BINARIES = v.binary.join(",");
  if (v.accel !== undefined) {
    env.QEMU_MIGTEST_ACCEL = oneOf("--accel", v.accel, ["auto", "kvm", "tcg"] as const, "auto");
  }
  if (v.results !== undefined) env.QEMU_MIGTEST_RESULTS = resolve(v.results);
  args.push(...passthrough);
  return { args, env };
}

function vitestBin(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("vitest/package.json")), "vitest.mjs");
}

export async function testCommand(argv: string[]): Promise<number> {
  const inv = await vitestInvocation(argv);
  if (inv === "help") {
    console.log(testUsage);
    return 0;
  }
  if (inv === "list") {
    console.log(`suites: unit, ${listSuites().join(", ")}`);
    for (const t of await listTags()) console.log(`tag ${t.name}: ${t.description ?? ""}`);
    return 0;
  }
  const shown = Object.entries(inv.env)
    .map(([k, val]) => `${k}=${val} `)
    .join("");
  console.log(`qemu-migtest test: ${shown}vitest ${inv.args.join(" ")}`);
  const r = await execa(process.execPath, [vitestBin(), ...inv.args], {
    cwd: REPO,
    env: inv.env,
    stdio: "inherit",
    reject: false,
  });
  return r.exitCode ?? 1;
}
