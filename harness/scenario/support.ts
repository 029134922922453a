// Whether the QEMU on each side has every capability and parameter a scenario names, asked of
// that QEMU (query-migrate-capabilities, query-migrate-parameters), never of a version number.

import type { MigrationPair } from "../migration/pair.ts";
import type { Side } from "../migration/timeline.ts";
import type { Scenario } from "./scenario.ts";

export interface MissingFeature {
  side: Side;
  kind: "capability" | "parameter";
  name: string;
  /** What that side's QEMU does know, for an error that says how to fix it. */
  known: string[];
}

/** Names a scenario sets on `side` (its own and the `both` entries). */
function named(scenario: Scenario, side: Side): { capabilities: string[]; parameters: string[] } {
  const keys = (o: object | undefined) => Object.keys(o ?? {});
  const c = scenario.capabilities;
  const p = scenario.parameters;
  return {
    capabilities: [...keys(c?.both), ...keys(c?.[side])],
    parameters: [...keys(p?.both), ...keys(p?.[side])],
  };
}

export async function missingFeatures(
  pair: MigrationPair,
  scenario: Scenario,
): Promise<MissingFeature[]> {
  const missing: MissingFeature[] = [];
  for (const side of ["source", "destination"] as const) {
    const want = named(scenario, side);
    const caps = new Set((await pair.queryCapabilities(side)).map((c) => c.capability));
    const params = new Set(Object.keys(await pair.queryParameters(side)));
    for (const name of want.capabilities) {
      if (!caps.has(name)) missing.push({ side, kind: "capability", name, known: [...caps] });
    }
    for (const name of want.parameters) {
      if (!params.has(name)) missing.push({ side, kind: "parameter", name, known: [...params] });
    }
  }
  return missing;
}

/** One line naming what is missing where, and on which QEMU; with `known`, what it has instead. */
export function describeMissing(
  pair: MigrationPair,
  missing: MissingFeature[],
  options: { known?: boolean } = {},
): string {
  const text = missing
    .map((m) => {
      const query =
        m.kind === "capability" ? "query-migrate-capabilities" : "query-migrate-parameters";
      return `QEMU ${pair.machine(m.side).binary.version} (${m.side}) has no migration ${m.kind} "${m.name}" (${query})`;
    })
    .join("; ");
  if (!options.known) return text;
  const lists = [...new Set(missing.map((m) => m.kind))].map((kind) => {
    const first = missing.find((m) => m.kind === kind);
    return `it knows the ${kind === "capability" ? "capabilities" : "parameters"} ${first?.known.join(", ")}`;
  });
  return `${text}; ${lists.join("; ")}`;
}
