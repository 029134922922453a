// What a failing migration test prints: per side, the last query-migrate and info migrate, the
// last events, the command line, and the tails of stderr and the serial console.

import type { Machine } from "../qemu/machine.ts";
import { indent, quoteCommandLine } from "../util/text.ts";
import type { Side, Timeline } from "./timeline.ts";

export interface DiagnosticsInput {
  phase: string;
  uri?: string | undefined;
  timeline: Timeline;
  machines: Record<Side, Machine>;
}

const EVENTS_SHOWN = 12;

export function formatDiagnostics({ phase, uri, timeline, machines }: DiagnosticsInput): string {
  const out: string[] = [`phase: ${phase}${uri ? `, uri ${uri}` : ""}`];
  for (const side of ["source", "destination"] as const) {
    const m = machines[side];
    const qm = timeline.last(side, "query-migrate");
    const im = timeline.last(side, "info-migrate");
    const events = timeline.of(side, "event").slice(-EVENTS_SHOWN);
    out.push(
      `=== ${side}: QEMU ${m.binary.version}, pid ${m.pid}, accel ${m.accel.accel} (${m.accel.reason}), ${m.isRunning() ? "running" : `exited (${JSON.stringify(m.exit)})`}`,
      `--- last query-migrate${qm ? ` (t=${qm.t} ms)` : ""}:`,
      indent(qm ? JSON.stringify(qm.data) : "(none recorded)"),
      `--- last info migrate${im ? ` (t=${im.t} ms)` : ""}:`,
      indent(im ? im.data || "(empty output)" : "(none recorded)"),
      `--- last ${events.length} events:`,
      indent(
        events
          .map((e) => `t=${e.t} ${e.data.event} ${JSON.stringify(e.data.data ?? {})}`)
          .join("\n") || "(none)",
      ),
      "--- command line:",
      indent(quoteCommandLine(m.commandLine)),
      "--- stderr tail:",
      indent(m.stderrTail(2048) || "(empty)"),
      "--- serial tail:",
      indent(printable(m.serialTail(512)) || "(empty)"),
    );
  }
  return out.join("\n");
}

/** Serial output of a test guest may be raw bytes: keep it readable in a report. */
function printable(text: string): string {
  let out = "";
  for (const c of text) {
    const code = c.charCodeAt(0);
    const keep = c === "\t" || c === "\n" || (code >= 0x20 && code <= 0x7e);
    out += keep ? c : `\\x${code.toString(16).padStart(2, "0")}`;
  }
  return out;
}
