// Trimming a schema to what the migration harness asks about, for fixtures too large to keep whole.

import type { SchemaInfo } from "./schema-info.ts";

/** Commands and events the migration harness cares about. */
export const MIGRATION_ROOTS: readonly string[] = [
  "qmp_capabilities",
  "query-version",
  "query-status",
  "query-migrate",
  "query-migrate-capabilities",
  "query-migrate-parameters",
  "migrate",
  "migrate-incoming",
  "migrate-set-capabilities",
  "migrate-set-parameters",
  "migrate_cancel",
  "migrate-cancel",
  "migrate-continue",
  "migrate-pause",
  "migrate-recover",
  "migrate-start-postcopy",
  "MIGRATION",
  "MIGRATION_PASS",
  "STOP",
  "RESUME",
];

/** The builtins plus every entity reachable from `roots` (commands/events), in original order. */
export function trimSchema(info: readonly SchemaInfo[], roots: readonly string[]): SchemaInfo[] {
  const byName = new Map(info.map((e) => [e.name, e]));
  const keep = new Set<string>();
  const pending = [...roots];
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    const e = byName.get(name);
    if (!e || keep.has(name)) continue;
    keep.add(name);
    switch (e["meta-type"]) {
      case "command":
        pending.push(e["arg-type"], e["ret-type"]);
        break;
      case "event":
        pending.push(e["arg-type"]);
        break;
      case "array":
        pending.push(e["element-type"]);
        break;
      case "object":
        for (const m of e.members) pending.push(m.type);
        for (const v of e.variants ?? []) pending.push(v.type);
        break;
      case "alternate":
        for (const m of e.members) pending.push(m.type);
        break;
    }
  }
  return info.filter((e) => e["meta-type"] === "builtin" || keep.has(e.name));
}
