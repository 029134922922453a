// `qemu-migtest report RUN.json`: the HTML report of a saved run (or its text summary).

import { writeFile } from "node:fs/promises";
import { renderReportHtml } from "../report/html.ts";
import { loadRun } from "../report/run-artefacts.ts";
import { type OptionSpec, parseFlags, UsageError } from "./args.ts";
import { runSummary } from "./format.ts";

export const reportOptions = {
  output: { type: "string", short: "o" },
  text: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpec;

const reportUsage = `usage: qemu-migtest report RUN.json [-o REPORT.html] [--text]

Renders one self-contained HTML file (charts drawn by an inlined uPlot; nothing is fetched when
it is viewed) from a run saved by \`qemu-migtest migrate --results DIR\` or by the suites with
QEMU_MIGTEST_RESULTS set (DIR/runs/*.json).

  -o, --output FILE   where to write the HTML (default: RUN.json with .html instead of .json)
  --text              print the text summary of both sides instead
  -h, --help          this text`;

export async function reportCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("qemu-migtest report", argv, reportOptions);
  if (values.help) {
    console.log(reportUsage);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      `qemu-migtest report takes exactly one run file (a DIR/runs/*.json), got ${positionals.length}; see --help`,
    );
  }
  const path = positionals[0] as string;
  const run = await loadRun(path);
  if (values.text) {
    console.log(runSummary(run));
    return 0;
  }
  const output = values.output ?? `${path.replace(/\.json$/, "")}.html`;
  await writeFile(output, renderReportHtml(run));
  console.log(`report: ${output}`);
  return 0;
}
