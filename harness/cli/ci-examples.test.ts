// The CI examples are valid YAML and every command they run exists: npm scripts, qemu-migtest
// subcommands and their flags, and the repository's scripts.

import { accessSync, constants, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { SUBCOMMANDS } from "./main.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const EXAMPLES = [".gitlab-ci.yml", ".github/workflows/nightly.yml"];

/** Every string anywhere in a parsed YAML document. */
function strings(node: unknown): string[] {
  if (typeof node === "string") return [node];
  if (Array.isArray(node)) return node.flatMap(strings);
  if (node && typeof node === "object") return Object.values(node).flatMap(strings);
  return [];
}

/** What is wrong with the commands in `text` (empty when all exist). */
function commandProblems(text: string): string[] {
  const problems: string[] = [];
  const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8"));
  for (const m of text.matchAll(/\bnpm run ([\w:-]+)/g)) {
    if (!(m[1] && m[1] in pkg.scripts)) problems.push(`npm run ${m[1]}: no such script`);
  }
  for (const m of text.matchAll(/\bnpx qemu-migtest ([\w-]+)([^\n;|&]*)/g)) {
    const command = SUBCOMMANDS[m[1] ?? ""];
    if (!command) {
      problems.push(`qemu-migtest ${m[1]}: no such command`);
      continue;
    }
    const own = (m[2] ?? "").split(/\s--\s/)[0] ?? "";
    for (const f of own.matchAll(/(?:^|\s)--([a-z][\w-]*)/g)) {
      if (!(f[1] && f[1] in command.options))
        problems.push(`qemu-migtest ${m[1]}: no flag --${f[1]}`);
    }
  }
  for (const m of text.matchAll(/(?:^|[\s;"])(scripts\/[\w.-]+)/g)) {
    try {
      accessSync(join(REPO, m[1] ?? ""), constants.X_OK);
    } catch {
      problems.push(`${m[1]}: missing or not executable`);
    }
  }
  if (/qemu-migtest/.test(text) && !pkg.bin?.["qemu-migtest"]) {
    problems.push("package.json has no qemu-migtest bin");
  }
  return problems;
}

describe("CI examples", () => {
  test.each(EXAMPLES)("%s is valid YAML and runs only commands that exist", (file) => {
    const doc = parse(readFileSync(join(REPO, file), "utf8"));
    expect(doc, `${file} parses to a mapping`).toBeTypeOf("object");
    const text = strings(doc).join("\n");
    expect(text, `${file} runs the suites through qemu-migtest`).toMatch(/npx qemu-migtest test /);
    expect(text, `${file} shards`).toMatch(/--shard/);
    expect(text, `${file} merges shard reports`).toMatch(/vitest run --merge-reports/);
    expect(commandProblems(text)).toEqual([]);
  });

  test("the command check finds a missing script, command and flag", () => {
    expect(
      commandProblems(
        "npm run nope\nnpx qemu-migtest frob\nnpx qemu-migtest test --colour -- --reporter=x\nscripts/nope",
      ),
    ).toEqual([
      "npm run nope: no such script",
      "qemu-migtest frob: no such command",
      "qemu-migtest test: no flag --colour",
      "scripts/nope: missing or not executable",
    ]);
  });

  test("the GitHub workflow has the job structure Actions expects", () => {
    const doc = parse(readFileSync(join(REPO, ".github/workflows/nightly.yml"), "utf8"));
    expect(Object.keys(doc.jobs)).toEqual(["test", "merge-reports"]);
    expect(doc.jobs.test.strategy.matrix.qemu).toEqual(["7.2", "10.0", "11.1"]);
    for (const job of Object.values(doc.jobs) as { steps: object[] }[]) {
      for (const step of job.steps)
        expect(Object.keys(step).some((k) => k === "run" || k === "uses")).toBe(true);
    }
  });
});
