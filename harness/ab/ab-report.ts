// The A/B difference report: what a patch changed, from the base build to the patched one, in the
// same scenario. JSON (format qemu-migtest-ab/1) is the record; the terminal summary and the
// self-contained HTML page are rendered from it.

import { basename } from "node:path";
import type { RemainingVerdict } from "../checks/remaining-checks.ts";
import { esc } from "../report/html.ts";
import type { ObservationChange, ObservationDiff } from "./observations.ts";
import type { AbScenario } from "./scenario.ts";
import type { SchemaChange } from "./schema-diff.ts";

export const AB_FORMAT = "qemu-migtest-ab/1";

export type Build = "base" | "patched";

export interface AbBuildSummary {
  /** "Debian qemu 10.2.2" or the tree's path. */
  source: string;
  patches: string[];
  wrapper: string;
  hash: string;
  version: string;
  cached: boolean;
  buildMs: number;
  scenario: { ok: boolean; error?: string; snapshots: number; durationMs: number };
  /** Run files of the scenario (project run format and its HTML report), when written. */
  files?: { run?: string; report?: string };
}

/** A verdict of a check on each build: "pass", "fail", "absent", "n/a". */
export interface AbVerdictRow {
  name: string;
  base: string;
  patched: string;
  differs: boolean;
  /** Failure messages, by build. */
  details: Partial<Record<Build, string[]>>;
}

export interface AbReport {
  format: typeof AB_FORMAT;
  createdAt: string;
  scenario: AbScenario;
  base: AbBuildSummary;
  patched: AbBuildSummary;
  schemaChanges: SchemaChange[];
  migrateChanges: ObservationChange[];
  hmpChanges: ObservationChange[];
  unmatchedPhases: ObservationDiff["unmatched"];
  verdicts: AbVerdictRow[];
  remaining: Record<Build, RemainingVerdict>;
  /** Why the A/B run fails (empty: it passes). */
  failures: string[];
  ok: boolean;
}

function verdictLine(v: AbVerdictRow): string {
  return `${v.name}: base ${v.base}, patched ${v.patched}${v.differs ? "   <- differs" : ""}`;
}

/** The terminal summary. */
export function renderAbText(r: AbReport): string {
  const out: string[] = [];
  const build = (name: Build, b: AbBuildSummary) =>
    `${name.padEnd(8)} QEMU ${b.version}  ${b.source}${b.patches.length ? ` + ${b.patches.join(" + ")}` : ""}  [${b.cached ? "cached" : `built in ${(b.buildMs / 1000).toFixed(0)} s`}, ${b.hash}]`;
  out.push("A/B builds", `  ${build("base", r.base)}`, `  ${build("patched", r.patched)}`);
  out.push(
    `scenario: ${r.scenario.memoryMiB} MiB bootblock guest, ${r.scenario.accel}, ${r.scenario.transport}, max-bandwidth ${r.scenario.maxBandwidth} B/s while active (${r.scenario.activeSnapshots} active snapshots)`,
  );
  const section = (title: string, lines: string[]) => {
    out.push("", `${title} (${lines.length})`);
    if (lines.length === 0) out.push("  none");
    for (const l of lines) out.push(`  ${l}`);
  };
  section(
    "query-qmp-schema differences",
    r.schemaChanges.map((c) => c.text),
  );
  section(
    "query-migrate members per phase",
    r.migrateChanges.map((c) => c.text),
  );
  section(
    "HMP info migrate lines per phase",
    r.hmpChanges.map((c) => c.text),
  );
  if (r.unmatchedPhases.length) {
    out.push(
      `  (phases seen on one build only, not compared: ${r.unmatchedPhases.map((u) => `${u.side} ${u.phase} on ${u.seenOn}`).join("; ")})`,
    );
  }
  out.push("", "suite verdicts");
  for (const v of r.verdicts) {
    out.push(`  ${verdictLine(v)}`);
    for (const [b, msgs] of Object.entries(v.details)) {
      for (const m of msgs ?? []) out.push(`    ${b}: ${m}`);
    }
  }
  out.push("");
  out.push(r.ok ? "A/B: PASS" : `A/B: FAIL\n${r.failures.map((f) => `  ${f}`).join("\n")}`);
  return out.join("\n");
}

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #212529; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 20px 0 6px; }
table { border-collapse: collapse; } th, td { text-align: left; vertical-align: top; padding: 3px 8px; border: 1px solid #dee2e6; }
.pass { color: #2b8a3e; } .fail { color: #c92a2a; font-weight: bold; } .absent, .none { color: #868e96; }
.differs { background: #fff3bf; } code, pre { font-size: 12px; } pre { white-space: pre-wrap; margin: 0; }
.add { color: #2b8a3e; } .del { color: #c92a2a; }
`;

/** One self-contained page: builds, the three difference lists, the verdict table. */
export function renderAbHtml(r: AbReport): string {
  const cls = (v: string) => (v === "pass" || v === "fail" || v === "absent" ? v : "none");
  const build = (name: Build, b: AbBuildSummary) =>
    `<tr><th>${name}</th><td>QEMU ${esc(b.version)}</td><td>${esc(b.source)}${b.patches.map((p) => `<br>+ ${esc(p)}`).join("")}</td><td><code>${esc(b.hash)}</code> ${b.cached ? "cached" : `built in ${(b.buildMs / 1000).toFixed(0)} s`}</td><td class="${b.scenario.ok ? "pass" : "fail"}">${b.scenario.ok ? `completed, ${b.scenario.snapshots} snapshots` : esc(b.scenario.error ?? "failed")}</td><td>${b.files?.report ? `<a href="${esc(basename(b.files.report))}">run report</a>` : ""}</td></tr>`;
  const list = (items: { text: string; kind: string }[]) =>
    items.length === 0
      ? `<p class="none">none</p>`
      : `<ul>${items.map((i) => `<li class="${/added|appears/.test(i.kind) ? "add" : /removed|vanishes/.test(i.kind) ? "del" : ""}">${esc(i.text)}</li>`).join("")}</ul>`;
  const verdicts = r.verdicts
    .map(
      (v) =>
        `<tr class="${v.differs ? "differs" : ""}"><td>${esc(v.name)}</td><td class="${cls(v.base)}">${esc(v.base)}</td><td class="${cls(v.patched)}">${esc(v.patched)}</td><td>${Object.entries(
          v.details,
        )
          .flatMap(([b, msgs]) => (msgs ?? []).map((m) => `<pre>${esc(`${b}: ${m}`)}</pre>`))
          .join("")}</td></tr>`,
    )
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A/B: ${esc(r.patched.patches.join(", ") || "patched")} on ${esc(r.base.source)}</title><style>${CSS}</style></head>
<body data-ab-ok="${r.ok}">
<h1>A/B ${r.ok ? '<span class="pass">PASS</span>' : '<span class="fail">FAIL</span>'}: ${esc(r.patched.patches.join(", ") || "patched")} on ${esc(r.base.source)}</h1>
${r.failures.length ? `<ul>${r.failures.map((f) => `<li class="fail">${esc(f)}</li>`).join("")}</ul>` : ""}
<h2>Builds</h2><table>${build("base", r.base)}${build("patched", r.patched)}</table>
<p>Scenario: ${r.scenario.memoryMiB} MiB bootblock guest, ${esc(r.scenario.accel)}, ${esc(r.scenario.transport)}, max-bandwidth ${r.scenario.maxBandwidth} B/s while active, ${r.scenario.activeSnapshots} active snapshots.</p>
<h2>query-qmp-schema differences (${r.schemaChanges.length})</h2>${list(r.schemaChanges.map((c) => ({ text: c.text, kind: c.kind })))}
<h2>query-migrate members per phase (${r.migrateChanges.length})</h2>${list(r.migrateChanges.map((c) => ({ text: c.text, kind: c.kind })))}
<h2>HMP info migrate lines per phase (${r.hmpChanges.length})</h2>${list(r.hmpChanges.map((c) => ({ text: c.text, kind: c.kind })))}
${r.unmatchedPhases.length ? `<p class="none">Phases seen on one build only (not compared): ${esc(r.unmatchedPhases.map((u) => `${u.side} ${u.phase} on ${u.seenOn}`).join("; "))}</p>` : ""}
<h2>Suite verdicts</h2><table><tr><th>check</th><th>base</th><th>patched</th><th>details</th></tr>${verdicts}</table>
<script type="application/json" id="ab-report">${JSON.stringify(r).replace(/</g, "\\u003c")}</script>
</body></html>
`;
}
