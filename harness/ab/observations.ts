// What each side showed in each phase of the A/B scenario, reduced to what can be compared
// between two builds: the query-migrate member paths seen (with a coarse "meaning": the JSON
// kind, and for numbers whether they were ever non-zero) and the HMP `info migrate` line labels.
// Values themselves differ run to run; presence and kind do not, unless the patch changed them.

import type { Side } from "../migration/timeline.ts";
import type { AbPhase, AbSnapshot } from "./scenario.ts";

/** The coarse meaning of a member over a phase: "string", "object", "number (always 0)", ... */
export type MemberKind = string;

export interface PhaseObservation {
  phase: AbPhase;
  side: Side;
  snapshots: number;
  /** Member path ("ram.remaining", "socket-address[].port") -> kind over the phase. */
  members: Record<string, MemberKind>;
  /** Line labels of info migrate, e.g. "Remaining", "  Throughput (Mbps)". */
  hmpLabels: string[];
}

export type ObservationChangeKind =
  | "member-appears"
  | "member-vanishes"
  | "member-meaning"
  | "hmp-appears"
  | "hmp-vanishes";

export interface ObservationChange {
  kind: ObservationChangeKind;
  side: Side;
  phase: AbPhase;
  /** Member path or HMP line label. */
  what: string;
  text: string;
  base?: MemberKind;
  patched?: MemberKind;
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Every member path of a reply with its values (arrays: "[]" and each element). */
export function memberPaths(
  value: unknown,
  prefix = "",
  out = new Map<string, unknown[]>(),
): Map<string, unknown[]> {
  if (value !== null && typeof value === "object") {
    if (Array.isArray(value)) {
      for (const v of value) memberPaths(v, `${prefix}[]`, out);
    } else {
      for (const [k, v] of Object.entries(value)) {
        const path = prefix ? `${prefix}.${k}` : k;
        const list = out.get(path) ?? [];
        list.push(v);
        out.set(path, list);
        memberPaths(v, path, out);
      }
    }
  }
  return out;
}

/** A member's meaning over all its values in a phase. */
export function memberKind(values: readonly unknown[]): MemberKind {
  const kinds = [...new Set(values.map(jsonKind))].sort();
  if (kinds.length === 1 && kinds[0] === "number") {
    return values.every((v) => v === 0) ? "number (always 0)" : "number (non-zero)";
  }
  return kinds.join("|");
}

/** The label of each info migrate line: the text before its first ":", indentation kept. */
export function hmpLabels(text: string): string[] {
  const labels: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    if (raw.trim() === "") continue;
    const indent = /^\s*/.exec(raw)?.[0].replace(/\t/g, "  ") ?? "";
    const body = raw.trim();
    // Socket lists print URIs ("tcp:127.0.0.1:4444") as lines of their own: label by scheme.
    const colon = body.indexOf(":");
    const label = colon < 0 ? body : body.slice(0, colon);
    const full = `${indent}${label.trim()}`;
    if (!labels.includes(full)) labels.push(full);
  }
  return labels;
}

/** Per phase and side: members seen in either read of any snapshot, HMP labels of any snapshot. */
export function observe(snapshots: readonly AbSnapshot[]): PhaseObservation[] {
  const out: PhaseObservation[] = [];
  const key = (s: AbSnapshot) => `${s.phase}\u0000${s.side}`;
  const groups = new Map<string, AbSnapshot[]>();
  for (const s of snapshots) {
    const list = groups.get(key(s)) ?? [];
    list.push(s);
    groups.set(key(s), list);
  }
  for (const list of groups.values()) {
    const first = list[0];
    if (!first) continue;
    const values = new Map<string, unknown[]>();
    const labels: string[] = [];
    for (const s of list) {
      for (const reply of [s.before, s.after]) {
        for (const [path, vs] of memberPaths(reply)) {
          values.set(path, [...(values.get(path) ?? []), ...vs]);
        }
      }
      for (const l of hmpLabels(s.infoMigrate)) if (!labels.includes(l)) labels.push(l);
    }
    const members: Record<string, MemberKind> = {};
    for (const path of [...values.keys()].sort())
      members[path] = memberKind(values.get(path) ?? []);
    out.push({
      phase: first.phase,
      side: first.side,
      snapshots: list.length,
      members,
      hmpLabels: labels,
    });
  }
  return out;
}

export interface ObservationDiff {
  changes: ObservationChange[];
  /** Phases seen on one build only (timing, e.g. a short setup): not compared. */
  unmatched: { side: Side; phase: AbPhase; seenOn: "base" | "patched" }[];
}

/** What appears, vanishes or changes meaning from the base build to the patched one. */
export function diffObservations(
  base: readonly PhaseObservation[],
  patched: readonly PhaseObservation[],
): ObservationDiff {
  const changes: ObservationChange[] = [];
  const unmatched: ObservationDiff["unmatched"] = [];
  const find = (list: readonly PhaseObservation[], o: PhaseObservation) =>
    list.find((x) => x.phase === o.phase && x.side === o.side);
  for (const b of base) {
    const p = find(patched, b);
    if (!p) {
      unmatched.push({ side: b.side, phase: b.phase, seenOn: "base" });
      continue;
    }
    const where = `${b.side}, ${b.phase}`;
    for (const path of [
      ...new Set([...Object.keys(b.members), ...Object.keys(p.members)]),
    ].sort()) {
      const x = b.members[path];
      const y = p.members[path];
      if (x === undefined && y !== undefined) {
        changes.push({
          kind: "member-appears",
          side: b.side,
          phase: b.phase,
          what: path,
          patched: y,
          text: `query-migrate ${path} appears (${where}): ${y}`,
        });
      } else if (x !== undefined && y === undefined) {
        changes.push({
          kind: "member-vanishes",
          side: b.side,
          phase: b.phase,
          what: path,
          base: x,
          text: `query-migrate ${path} vanishes (${where}): was ${x}`,
        });
      } else if (x !== undefined && y !== undefined && x !== y) {
        changes.push({
          kind: "member-meaning",
          side: b.side,
          phase: b.phase,
          what: path,
          base: x,
          patched: y,
          text: `query-migrate ${path} changes meaning (${where}): ${x} on the base, ${y} with the patch`,
        });
      }
    }
    for (const l of p.hmpLabels) {
      if (!b.hmpLabels.includes(l)) {
        changes.push({
          kind: "hmp-appears",
          side: b.side,
          phase: b.phase,
          what: l,
          text: `info migrate line "${l.trim()}:" appears (${where})`,
        });
      }
    }
    for (const l of b.hmpLabels) {
      if (!p.hmpLabels.includes(l)) {
        changes.push({
          kind: "hmp-vanishes",
          side: b.side,
          phase: b.phase,
          what: l,
          text: `info migrate line "${l.trim()}:" vanishes (${where})`,
        });
      }
    }
  }
  for (const p of patched) {
    if (!find(base, p)) unmatched.push({ side: p.side, phase: p.phase, seenOn: "patched" });
  }
  return { changes, unmatched };
}
