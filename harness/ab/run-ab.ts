// The A/B run: build the base and the patched QEMU, run the same scenario on both, compare the
// schemas, the per-phase query-migrate members and HMP lines, and the suite verdicts.

import { writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { checkDestinationStats } from "../checks/destination-stats.ts";
import { checkRemaining } from "../checks/remaining-checks.ts";
import { compareWithQmp } from "../hmp/compare-qmp.ts";
import { parseInfoMigrate } from "../hmp/info-migrate.ts";
import { buildQemu, type QemuBuild, type QemuPatch, type QemuSource } from "../qemu/build.ts";
import { migrationFeatures } from "../qmp/migration-features.ts";
import { QmpSchema } from "../qmp/schema.ts";
import { formatViolations, validateReply } from "../qmp/validate.ts";
import { renderReportHtml } from "../report/html.ts";
import { saveRun } from "../report/run-artefacts.ts";
import { makeDir } from "../util/make-dir.ts";
import {
  AB_FORMAT,
  type AbBuildSummary,
  type AbReport,
  type AbVerdictRow,
  type Build,
  renderAbHtml,
  renderAbText,
} from "./ab-report.ts";
import { diffObservations, observe } from "./observations.ts";
import {
  type AbScenario,
  type AbScenarioRecord,
  type AbSnapshot,
  DEFAULT_AB_SCENARIO,
  runAbScenario,
} from "./scenario.ts";
import { diffSchemas } from "./schema-diff.ts";

export interface AbOptions {
  base: QemuSource;
  /** Applied (or reverted) on top of the base to make the patched build. */
  patches: QemuPatch[];
  scenario?: Partial<AbScenario>;
  configureFlags?: string[];
  jobs?: number;
  /** Where ab-report.json/.html and the two run files go. */
  outDir: string;
  log?: (line: string) => void;
}

export interface AbOutcome {
  report: AbReport;
  files: { json: string; html: string; text: string };
}

function sourceLabel(s: QemuSource): string {
  return "debian" in s ? `Debian qemu ${s.debian}` : s.tree;
}

/** Checks that run on each build's recorded snapshots; each yields pass/fail/absent + messages. */
function verdictsOf(
  record: AbScenarioRecord,
): { name: string; status: string; failures: string[] }[] {
  const schema = new QmpSchema(record.schema);
  const snaps = record.snapshots;
  const out: { name: string; status: string; failures: string[] }[] = [];
  out.push({
    name: "migration completes",
    status: record.outcome.ok ? "pass" : "fail",
    failures: record.outcome.ok ? [] : [record.outcome.error ?? "failed"],
  });
  const remaining = checkRemaining({
    schemaDeclares: migrationFeatures(schema).topLevelRemaining,
    snapshots: snaps,
  });
  out.push({ name: "remaining", status: remaining.status, failures: remaining.failures });
  const violations: string[] = [];
  snaps.forEach((s, i) => {
    for (const reply of [s.before, s.after]) {
      const v = validateReply(schema, "query-migrate", reply);
      if (v.length)
        violations.push(
          `${s.side}, phase ${s.phase}, snapshot ${i + 1}: ${formatViolations("query-migrate", v)}`,
        );
    }
  });
  out.push({
    name: "query-migrate matches its own schema",
    status: violations.length ? "fail" : "pass",
    failures: violations,
  });
  out.push(destinationStatsVerdict(record, schema));
  const unknown: string[] = [];
  const disagree: string[] = [];
  snaps.forEach((s: AbSnapshot, i) => {
    const hmp = parseInfoMigrate(s.infoMigrate);
    for (const l of hmp.unknownLines)
      unknown.push(`${s.side}, phase ${s.phase}, snapshot ${i + 1}: ${JSON.stringify(l)}`);
    // Only stable snapshots are compared: a status change between the reads proves nothing.
    if (s.before.status === s.after.status) {
      for (const d of compareWithQmp(hmp, s.after, {
        live: s.after.status !== "completed" && s.after.status !== undefined,
      })) {
        disagree.push(`${s.side}, phase ${s.phase}, snapshot ${i + 1}: ${d}`);
      }
    }
  });
  out.push({
    name: "info migrate fully parsed",
    status: unknown.length ? "fail" : "pass",
    failures: [...new Set(unknown)],
  });
  out.push({
    name: "info migrate agrees with query-migrate",
    status: disagree.length ? "fail" : "pass",
    failures: disagree,
  });
  return out;
}

/**
 * The destination's query-migrate after completion (destination-ram-stats.patch): the patch's
 * figures and formulas where the schema declares it, the released `{"status": "completed"}`
 * where it does not ("absent").
 */
function destinationStatsVerdict(
  record: AbScenarioRecord,
  schema: QmpSchema,
): { name: string; status: string; failures: string[] } {
  const name = "destination statistics";
  const last = (side: "source" | "destination") =>
    record.snapshots.filter((s) => s.side === side && s.phase === "completed").at(-1)?.after;
  const dst = last("destination");
  const src = last("source");
  if (!dst || !src)
    return { name, status: "n/a", failures: ["no completed snapshot of both sides"] };
  const patched = migrationFeatures(schema).destinationRamStats;
  const failures = checkDestinationStats(dst, src, patched);
  return { name, status: failures.length ? "fail" : patched ? "pass" : "absent", failures };
}

/** Build both, run both, compare; writes the report files and returns the report. */
export async function runAb(options: AbOptions): Promise<AbOutcome> {
  const log = options.log ?? (() => undefined);
  const scenario: AbScenario = { ...DEFAULT_AB_SCENARIO, ...options.scenario };
  await makeDir(options.outDir);
  // One after the other: they share one tree, and the machine has two cores.
  const baseBuild = await buildVariant(options, log, "base", []);
  const patchedBuild = await buildVariant(options, log, "patched", options.patches);
  const baseRun = await runVariant(options, scenario, log, "base", baseBuild);
  const patchedRun = await runVariant(options, scenario, log, "patched", patchedBuild);
  const report = compareAbRuns(
    scenario,
    { summary: buildSummary(options, baseBuild, [], baseRun), record: baseRun.record },
    {
      summary: buildSummary(options, patchedBuild, options.patches, patchedRun),
      record: patchedRun.record,
    },
  );
  return { report, files: await writeAbReport(options.outDir, report) };
}

type Log = (line: string) => void;

async function buildVariant(
  options: AbOptions,
  log: Log,
  name: Build,
  patches: QemuPatch[],
): Promise<QemuBuild> {
  log(
    `${name}: building ${sourceLabel(options.base)}${patches.length ? ` + ${patches.map((p) => basename(p.file)).join(" + ")}` : ""}`,
  );
  const b = await buildQemu({
    source: options.base,
    patches,
    ...(options.configureFlags ? { configureFlags: options.configureFlags } : {}),
    ...(options.jobs ? { jobs: options.jobs } : {}),
    onProgress: (line) => log(`${name}: ${line}`),
  });
  log(
    `${name}: ${b.cached ? "cached" : `built in ${(b.durationMs / 1000).toFixed(0)} s`}: ${b.wrapper} (QEMU ${b.version})`,
  );
  return b;
}

interface VariantRun {
  record: AbScenarioRecord;
  durationMs: number;
  files: { run?: string; report?: string };
}

/** The scenario on one build; its run file, run report and snapshots saved in the out dir. */
async function runVariant(
  options: AbOptions,
  scenario: AbScenario,
  log: Log,
  name: Build,
  b: QemuBuild,
): Promise<VariantRun> {
  log(`${name}: running the scenario on QEMU ${b.version}`);
  const started = Date.now();
  const record = await runAbScenario(b.wrapper, scenario, {
    name: `ab ${name}`,
    onNote: (t) => log(`${name}: ${t}`),
  });
  const durationMs = Date.now() - started;
  log(
    `${name}: ${record.outcome.ok ? "completed" : `FAILED: ${record.outcome.error}`} (${record.snapshots.length} snapshots, ${(durationMs / 1000).toFixed(1)} s)`,
  );
  const files: VariantRun["files"] = {};
  if (record.run) {
    files.run = await saveRun(options.outDir, record.run, `${name}-run`);
    files.report = join(options.outDir, `${name}-run.html`);
    await writeFile(files.report, renderReportHtml(record.run));
  }
  await writeFile(
    join(options.outDir, `${name}-snapshots.json`),
    `${JSON.stringify(record.snapshots, null, 1)}\n`,
  );
  return { record, durationMs, files };
}

function buildSummary(
  options: AbOptions,
  b: QemuBuild,
  patches: QemuPatch[],
  r: VariantRun,
): AbBuildSummary {
  return {
    source: b.info["debian-version"]
      ? `Debian qemu ${b.info["debian-version"]}`
      : sourceLabel(options.base),
    patches: patches.map((p) => `${p.mode === "revert" ? "revert " : ""}${basename(p.file)}`),
    wrapper: b.wrapper,
    hash: b.hash,
    version: b.version,
    cached: b.cached,
    buildMs: b.durationMs,
    scenario: {
      ok: r.record.outcome.ok,
      ...(r.record.outcome.error ? { error: r.record.outcome.error } : {}),
      snapshots: r.record.snapshots.length,
      durationMs: r.durationMs,
    },
    files: r.files,
  };
}

async function writeAbReport(outDir: string, report: AbReport): Promise<AbOutcome["files"]> {
  const files = {
    json: join(outDir, "ab-report.json"),
    html: join(outDir, "ab-report.html"),
    text: join(outDir, "ab-report.txt"),
  };
  await writeFile(files.json, `${JSON.stringify(report, null, 1)}\n`);
  await writeFile(files.html, renderAbHtml(report));
  await writeFile(files.text, `${renderAbText(report)}\n`);
  return files;
}

/** The report of two recorded scenario runs: differences, verdicts, and whether the patch passes. */
export function compareAbRuns(
  scenario: AbScenario,
  baseRun: { summary: AbBuildSummary; record: AbScenarioRecord },
  patchedRun: { summary: AbBuildSummary; record: AbScenarioRecord },
): AbReport {
  const schemaChanges = diffSchemas(
    new QmpSchema(baseRun.record.schema),
    new QmpSchema(patchedRun.record.schema),
  );
  const obs = diffObservations(
    observe(baseRun.record.snapshots),
    observe(patchedRun.record.snapshots),
  );
  const vb = verdictsOf(baseRun.record);
  const vp = verdictsOf(patchedRun.record);
  const verdicts: AbVerdictRow[] = vb.map((b) => {
    const p = vp.find((x) => x.name === b.name);
    const details: AbVerdictRow["details"] = {};
    if (b.failures.length) details.base = b.failures;
    if (p?.failures.length) details.patched = p.failures;
    return {
      name: b.name,
      base: b.status,
      patched: p?.status ?? "n/a",
      differs: b.status !== p?.status,
      details,
    };
  });
  const remainingOf = (r: AbScenarioRecord) =>
    checkRemaining({
      schemaDeclares: migrationFeatures(new QmpSchema(r.schema)).topLevelRemaining,
      snapshots: r.snapshots,
    });
  // The patch fails the A/B run when the patched build fails a check: a regression, or a check
  // of the feature it adds. Base failures are shown, not held against the patch.
  const failures = verdicts
    .filter((v) => v.patched === "fail")
    .map(
      (v) =>
        `patched build fails "${v.name}"${v.base === "fail" ? " (the base fails it too)" : ""}: ${v.details.patched?.[0] ?? ""}`,
    );
  if (!baseRun.record.outcome.ok)
    failures.push(`base build: the scenario failed: ${baseRun.record.outcome.error}`);
  const report: AbReport = {
    format: AB_FORMAT,
    createdAt: new Date().toISOString(),
    scenario,
    base: baseRun.summary,
    patched: patchedRun.summary,
    schemaChanges,
    migrateChanges: obs.changes.filter((c) => c.kind.startsWith("member-")),
    hmpChanges: obs.changes.filter((c) => c.kind.startsWith("hmp-")),
    unmatchedPhases: obs.unmatched,
    verdicts,
    remaining: { base: remainingOf(baseRun.record), patched: remainingOf(patchedRun.record) },
    failures,
    ok: failures.length === 0,
  };
  return report;
}
