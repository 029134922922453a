// One self-contained HTML report per run: uPlot and its stylesheet are inlined, the data is
// embedded as JSON, nothing is fetched when the file is viewed. uPlot because it is small (about
// 50 KB minified, no dependencies) and draws thousands of time-series points on a canvas in
// milliseconds; ECharts is ~1 MB and Vega-Lite needs Vega plus a compiler, for charts that are
// all plain lines over time.
//
// The page's own script (page-script.js) publishes what it drew in `document.body.dataset.report`
// (JSON: per chart its draw count, plot rectangle and series colours; page errors), so a headless
// browser can check it.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Side, TimelineEntry } from "../migration/timeline.ts";
import { quoteCommandLine } from "../util/text.ts";
import type { RunRecord, RunSide } from "./run-artefacts.ts";
import { reportSeries } from "./series.ts";

const require = createRequire(import.meta.url);

/** The series colours, also what a screenshot check looks for inside each plot. */
export const REPORT_COLORS = {
  ramRemaining: "#1f6feb",
  systemRemaining: "#d9480f",
  mbps: "#2b8a3e",
  dirtyPagesRate: "#ae3ec9",
  expectedDowntime: "#e8590c",
  downtimeLimit: "#495057",
} as const;

/** What the page writes into body[data-report] once its charts have drawn. */
export interface ReportPageState {
  charts: {
    id: string;
    draws: number;
    empty: boolean;
    /** The plot area in CSS pixels (page coordinates). */
    rect?: { x: number; y: number; width: number; height: number };
    /** Colours of the series that have at least one value. */
    colors: string[];
  }[];
  errors: string[];
}

let pageAssets: { js: string; css: string; pageScript: string } | undefined;

/** uPlot's build and stylesheet, and the page's own script (page-script.js), read once. */
function loadAssets(): { js: string; css: string; pageScript: string } {
  if (!pageAssets) {
    const pageScript = readFileSync(new URL("./page-script.js", import.meta.url), "utf8");
    // Inlined as it is: it must not end its own <script> element.
    if (/<\/script/i.test(pageScript)) throw new Error("page-script.js contains </script");
    pageAssets = {
      js: readFileSync(require.resolve("uplot/dist/uPlot.iife.min.js"), "utf8"),
      css: readFileSync(require.resolve("uplot/dist/uPlot.min.css"), "utf8"),
      pageScript,
    };
  }
  return pageAssets;
}

export function renderReportHtml(run: RunRecord): string {
  const { js, css, pageScript } = loadAssets();
  const series = reportSeries(run);
  const data = { series, colors: REPORT_COLORS };
  const title = `qemu-migtest: ${run.name}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(title)}</title>
<style>${css}</style>
<style>${PAGE_CSS}</style>
</head>
<body>
<h1>${esc(run.name)}</h1>
${summarySection(run)}
<h2>Charts (source side)</h2>
<p class="note">Shaded bands: source migration status. Dashed lines: MIGRATION_PASS events (p = pass).
${series.hasSystemRemaining ? "" : "This QEMU has no top-level <code>remaining</code> (system-wide, 11.1+): only RAM remaining is shown."}</p>
<div id="status-legend"></div>
<div class="chart" id="chart-remaining"></div>
<div class="chart" id="chart-throughput"></div>
<div class="chart" id="chart-dirty-rate"></div>
<div class="chart" id="chart-downtime"></div>
${sidesSection(run)}
<script id="report-data" type="application/json">${jsonForScript(data)}</script>
<script>${js}</script>
<script>${pageScript}</script>
</body>
</html>
`;
}

function summarySection(run: RunRecord): string {
  const ram = run.ramCheck;
  const ramClass = ram ? (ram.ok ? "ok" : "bad") : "none";
  const ramText = ram ? ram.summary : "not run";
  const outcome = run.outcome.ok ? "completed" : `failed in phase ${run.outcome.phase}`;
  const verdicts = run.verdicts
    .map(
      (v) =>
        `<li class="${v.ok ? "ok" : "bad"}">${v.ok ? "PASS" : "FAIL"} ${esc(v.name)}${v.detail ? `: ${esc(v.detail)}` : ""}</li>`,
    )
    .join("\n");
  const src = run.sides.source;
  const dst = run.sides.destination;
  return `<table class="summary">
<tr><th>outcome</th><td class="${run.outcome.ok ? "ok" : "bad"}">${esc(outcome)}${run.outcome.error ? `<pre>${esc(run.outcome.error)}</pre>` : ""}</td></tr>
<tr><th>RAM check</th><td class="${ramClass}" id="ram-check">${esc(ramText)}</td></tr>
<tr><th>source</th><td>QEMU ${esc(src.binary.version)} (${esc(src.binary.path)}), ${esc(src.accel.accel)}: ${esc(src.accel.reason)}</td></tr>
<tr><th>destination</th><td>QEMU ${esc(dst.binary.version)} (${esc(dst.binary.path)}), ${esc(dst.accel.accel)}: ${esc(dst.accel.reason)}</td></tr>
<tr><th>downtime</th><td id="downtime">${esc(downtimeText(run))}</td></tr>
<tr><th>uri</th><td>${esc(run.uri ?? "(none)")}</td></tr>
<tr><th>duration</th><td>${run.durationMs === undefined ? "n/a" : `${run.durationMs} ms`}</td></tr>
<tr><th>recorded</th><td>${esc(run.createdAt)}</td></tr>
</table>
${verdicts ? `<h2>Verdicts</h2><ul class="verdicts">${verdicts}</ul>` : ""}`;
}

/** QEMU's downtime (the source's last reply) and, when sampled, what the guest saw of it. */
export function downtimeText(run: RunRecord): string {
  const g = run.guestDowntime;
  const replies = run.timeline.entries.filter(
    (e): e is Extract<TimelineEntry, { kind: "query-migrate" }> =>
      e.side === "source" && e.kind === "query-migrate",
  );
  const qemu = g?.qemuDowntimeMs ?? replies.at(-1)?.data.downtime;
  const qemuText = qemu === undefined ? "QEMU reported none" : `QEMU ${qemu} ms`;
  if (!g) return `${qemuText} (guest-visible: not sampled)`;
  return `${qemuText}; guest-visible ${g.stretchMs.toFixed(1)} ms (+-${g.resolutionMs.toFixed(1)}), the guest's clock advanced ${g.guestClockMs.toFixed(2)} ms across it`;
}

function sidesSection(run: RunRecord): string {
  const sides: Side[] = ["source", "destination"];
  const cell = (f: (s: RunSide) => string) =>
    sides.map((s) => `<td>${f(run.sides[s])}</td>`).join("");
  const enabledCaps = (s: RunSide) =>
    s.capabilities
      ? s.capabilities
          .filter((c) => c.state)
          .map((c) => c.capability)
          .join(", ") || "(none)"
      : "(not read)";
  const paramNames = [
    ...new Set(sides.flatMap((s) => Object.keys(run.sides[s].parameters ?? {}))),
  ].sort();
  const paramRows = paramNames
    .map(
      (name) =>
        `<tr><th>${esc(name)}</th>${cell((s) => esc(JSON.stringify(s.parameters?.[name]) ?? ""))}</tr>`,
    )
    .join("\n");
  return `<h2>Final state of both sides</h2>
<table class="sides">
<tr><th></th><th>source</th><th>destination</th></tr>
<tr><th>VM</th>${cell((s) => esc(s.final.vm ? `${s.final.vm.status}${s.final.vm.running ? " (running)" : ""}` : "(not read)"))}</tr>
<tr><th>MIGRATION events</th>${cell((s) => esc(s.final.events.join(" → ") || "(none)"))}</tr>
<tr><th>query-migrate</th>${cell((s) => `<pre>${esc(JSON.stringify(s.final.queryMigrate ?? null, null, 2))}</pre>`)}</tr>
<tr><th>info migrate</th>${cell((s) => `<pre>${esc(s.final.infoMigrate?.trimEnd() || "(empty)")}</pre>`)}</tr>
<tr><th>capabilities on</th>${cell((s) => esc(enabledCaps(s)))}</tr>
<tr><th>command line</th>${cell((s) => `<pre class="cmd">${esc(quoteCommandLine(s.commandLine))}</pre>`)}</tr>
</table>
${paramRows ? `<h2>Migration parameters</h2><table class="sides"><tr><th></th><th>source</th><th>destination</th></tr>\n${paramRows}</table>` : ""}`;
}

/** JSON inside <script>: no "</script>" or "<!--" can appear. */
function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

export function esc(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );
}

const PAGE_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #212529; background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
table { border-collapse: collapse; }
th, td { text-align: left; vertical-align: top; padding: 3px 8px; border: 1px solid #dee2e6; }
td.ok, li.ok { color: #2b8a3e; }
td.bad, li.bad { color: #c92a2a; font-weight: bold; }
td.none { color: #868e96; }
pre { margin: 0; font-size: 12px; white-space: pre-wrap; }
pre.cmd { max-width: 560px; word-break: break-all; }
.chart { margin: 6px 0 10px; width: 1200px; min-height: 40px; }
.chart .empty { color: #868e96; padding: 8px; border: 1px dashed #ced4da; }
.note { color: #495057; margin: 4px 0; }
#status-legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border: 1px solid #ced4da; }
ul.verdicts { margin: 0; padding-left: 18px; }
`;
