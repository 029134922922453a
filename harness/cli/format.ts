// Text formatting for the CLI: sizes, the live progress line, aligned tables, and the end-of-run
// summary of both sides (also what `report --text` prints).

import type { Side } from "../migration/timeline.ts";
import type { MigrationInfo } from "../qmp/qapi.ts";
import type { RunRecord } from "../report/run-artefacts.ts";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 -> "1.5 KiB"; three significant digits, like QEMU's size_to_str. */
export function formatBytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "-";
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : Number(v.toPrecision(3))} ${UNITS[u]}`;
}

/**
 * One line of live progress from a source query-migrate reply: status, pass, transferred,
 * remaining (and system-wide remaining when QEMU has it), throughput, dirty rate, expected
 * downtime. `passes` is the MIGRATION_PASS count, used when the reply has no dirty-sync-count.
 */
export function progressLine(elapsedMs: number, info: MigrationInfo, passes = 0): string {
  const ram = info.ram;
  const parts = [`${(elapsedMs / 1000).toFixed(1).padStart(5)}s`, info.status ?? "none"];
  const pass = ram?.["dirty-sync-count"] ?? passes;
  if (pass) parts.push(`pass ${pass}`);
  if (ram) {
    parts.push(`transferred ${formatBytes(ram.transferred)}`);
    const system =
      typeof info.remaining === "number" ? ` (system-wide ${formatBytes(info.remaining)})` : "";
    parts.push(`remaining ${formatBytes(ram.remaining)}${system}`);
    parts.push(`${ram.mbps.toFixed(1)} Mbps`);
    if (ram["dirty-pages-rate"] !== undefined)
      parts.push(`dirty ${ram["dirty-pages-rate"]} pages/s`);
  } else if (typeof info.remaining === "number") {
    parts.push(`remaining (system-wide) ${formatBytes(info.remaining)}`);
  }
  if (info["expected-downtime"] !== undefined) {
    parts.push(`expected downtime ${info["expected-downtime"]} ms`);
  }
  if (info.downtime !== undefined) parts.push(`downtime ${info.downtime} ms`);
  return parts.join("  ");
}

/** Left-aligned columns; the first row is the header when `header` is set. */
export function table(rows: string[][], options: { header?: boolean; gap?: number } = {}): string {
  const gap = " ".repeat(options.gap ?? 2);
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  const lines = rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join(gap)
      .trimEnd(),
  );
  if (options.header && lines.length > 0) {
    lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join(gap));
  }
  return lines.join("\n");
}

/** Both sides side by side, their info migrate, the verdicts and the RAM check. */
export function runSummary(run: RunRecord): string {
  const sides: Side[] = ["source", "destination"];
  const q = (s: Side) => run.sides[s].final.queryMigrate ?? {};
  const row = (label: string, f: (s: Side) => string | number | undefined) => [
    label,
    ...sides.map((s) => {
      const v = f(s);
      return v === undefined || v === "" ? "-" : String(v);
    }),
  ];
  const ms = (v: unknown) => (typeof v === "number" ? `${v} ms` : undefined);
  const rows = [
    ["", "source", "destination"],
    row("QEMU", (s) => `${run.sides[s].binary.version} (${run.sides[s].binary.path})`),
    row("accel", (s) => run.sides[s].accel.accel),
    row("pid", (s) => run.sides[s].pid),
    row("VM", (s) => run.sides[s].final.vm?.status),
    row("migration status", (s) => q(s).status),
    row("MIGRATION events", (s) => run.sides[s].final.events.join(" -> ")),
    row("total-time", (s) => ms(q(s)["total-time"])),
    row("setup-time", (s) => ms(q(s)["setup-time"])),
    row("downtime", (s) => ms(q(s).downtime)),
    row("ram transferred", (s) => optBytes(q(s).ram?.transferred)),
    row("ram total", (s) => optBytes(q(s).ram?.total)),
    row("ram remaining", (s) => optBytes(q(s).ram?.remaining)),
    row("remaining (system-wide)", (s) =>
      typeof q(s).remaining === "number" ? formatBytes(q(s).remaining as number) : undefined,
    ),
    row("dirty-sync-count", (s) => q(s).ram?.["dirty-sync-count"]),
    row("mbps", (s) => q(s).ram?.mbps.toFixed(2)),
  ];
  const out: string[] = [table(rows, { header: true })];
  for (const s of sides) {
    const text = run.sides[s].final.infoMigrate?.trimEnd();
    out.push(`\n${s} info migrate:\n${text ? indent(text) : "    (empty)"}`);
  }
  if (run.verdicts.length > 0) {
    out.push(
      `\n${run.verdicts.map((v) => `${v.ok ? "PASS" : "FAIL"} ${v.name}${v.detail ? `: ${v.detail}` : ""}`).join("\n")}`,
    );
  }
  const g = run.guestDowntime;
  if (g) {
    out.push(
      `\nguest-visible downtime: ${g.stretchMs.toFixed(1)} ms (+-${g.resolutionMs.toFixed(1)} ms; QEMU downtime ${g.qemuDowntimeMs ?? "-"} ms; the guest's own clock moved ${g.guestClockMs.toFixed(1)} ms across it)`,
    );
  }
  out.push(`\nRAM check: ${run.ramCheck ? run.ramCheck.summary : "not run"}`);
  return out.join("\n");
}

function optBytes(n: number | undefined): string | undefined {
  return n === undefined ? undefined : formatBytes(n);
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `    ${l.replace(/\t/g, "  ")}`)
    .join("\n");
}
