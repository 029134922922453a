// Differences between two QEMUs' query-qmp-schema. Type names in introspection are meaningless
// numbers that change between builds, so each schema is flattened into paths named by what a
// client types: "command query-migrate: return.remaining", "event MIGRATION: data.status".
// Two builds are compared path by path: members added or removed, optional-ness changed, the
// type changed, enum values added or removed.

import type { QmpSchema } from "../qmp/schema.ts";
import type { SchemaInfo } from "../qmp/schema-info.ts";

/** One node of a flattened schema. */
export interface SchemaNode {
  /** "int", "str", "object", "enum", "array", "alternate", ... (builtin name or meta-type). */
  kind: string;
  /** Members only: optional in QAPI terms ('*name'). */
  optional?: boolean;
  /** Enums only. */
  values?: string[];
  features?: string[];
  /**
   * Where the node is defined in its own schema: the (numbered) type that has the member, or the
   * enum itself. One definition reached from many commands is one change, not one per path.
   */
  definedIn?: string;
}

export type FlatSchema = Map<string, SchemaNode>;

export type SchemaChangeKind =
  | "added"
  | "removed"
  | "optional-changed"
  | "type-changed"
  | "enum-values"
  | "features-changed";

export interface SchemaChange {
  kind: SchemaChangeKind;
  path: string;
  /** One line a developer reads, e.g. "added: command query-migrate: return.remaining (int, optional)". */
  text: string;
  base?: SchemaNode;
  patched?: SchemaNode;
  /** The same change seen at this many other paths (the first path is reported). */
  alsoAt?: number;
  /** enum-values: what the patched build added / removed. */
  valuesAdded?: string[];
  valuesRemoved?: string[];
}

// Deep unions (blockdev-add) repeat large subtrees; a path this deep says nothing more.
const MAX_DEPTH = 12;

/** Every command, event and what they take or return, as path -> node. */
export function flattenSchema(schema: QmpSchema): FlatSchema {
  const flat: FlatSchema = new Map();
  const kindOf = (type: string): string => {
    const t = schema.get(type);
    if (!t) return `<unknown ${type}>`;
    return t["meta-type"] === "builtin" ? t.name : t["meta-type"];
  };
  const walk = (
    type: string,
    path: string,
    node: Omit<SchemaNode, "kind">,
    stack: readonly string[],
  ) => {
    const t: SchemaInfo | undefined = schema.get(type);
    const entry: SchemaNode = { kind: kindOf(type), ...node };
    if (t?.["meta-type"] === "enum") {
      entry.values = schema.enumValues(type);
      entry.definedIn = type;
    }
    flat.set(path, entry);
    if (!t || stack.includes(type) || stack.length >= MAX_DEPTH) return;
    const inner = [...stack, type];
    switch (t["meta-type"]) {
      case "array":
        walk(t["element-type"], `${path}[]`, {}, inner);
        break;
      case "object": {
        for (const m of t.members) {
          walk(
            m.type,
            `${path}.${m.name}`,
            {
              optional: "default" in m,
              ...(m.features?.length ? { features: m.features } : {}),
              definedIn: `${type}.${m.name}`,
            },
            inner,
          );
        }
        for (const v of t.variants ?? []) {
          walk(v.type, `${path}{${t.tag}=${v.case}}`, { definedIn: `${type}{${v.case}}` }, inner);
        }
        break;
      }
      case "alternate":
        t.members.forEach((m, i) => {
          walk(m.type, `${path}|${i}`, {}, inner);
        });
        break;
      default:
        break;
    }
  };
  for (const entity of schema.info) {
    const features = entity.features?.length ? { features: entity.features } : {};
    if (entity["meta-type"] === "command") {
      const head = `command ${entity.name}`;
      flat.set(head, { kind: "command", ...features });
      walk(entity["arg-type"], `${head}: arguments`, {}, []);
      walk(entity["ret-type"], `${head}: return`, {}, []);
    } else if (entity["meta-type"] === "event") {
      const head = `event ${entity.name}`;
      flat.set(head, { kind: "event", ...features });
      walk(entity["arg-type"], `${head}: data`, {}, []);
    }
  }
  return flat;
}

function describe(node: SchemaNode): string {
  const bits = [node.kind];
  if (node.optional !== undefined) bits.push(node.optional ? "optional" : "required");
  if (node.features?.length) bits.push(`features: ${node.features.join(", ")}`);
  return bits.join(", ");
}

/**
 * What changed from `base` to `patched`. Below an added or removed path only the top one is
 * reported (a new command is one change, not one per member).
 */
export function diffSchemas(
  base: QmpSchema | FlatSchema,
  patched: QmpSchema | FlatSchema,
): SchemaChange[] {
  const a = base instanceof Map ? base : flattenSchema(base);
  const b = patched instanceof Map ? patched : flattenSchema(patched);
  const changes: SchemaChange[] = [];
  const under = (path: string, roots: Set<string>) => {
    for (const root of roots) {
      if (path.startsWith(root) && /^[.[{|:]/.test(path.slice(root.length))) return true;
    }
    return false;
  };
  const added = new Set<string>();
  const removed = new Set<string>();
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  for (const path of paths) {
    const x = a.get(path);
    const y = b.get(path);
    if (!x && y) {
      if (under(path, added)) continue;
      added.add(path);
      changes.push({ kind: "added", path, text: `added: ${path} (${describe(y)})`, patched: y });
    } else if (x && !y) {
      if (under(path, removed)) continue;
      removed.add(path);
      changes.push({ kind: "removed", path, text: `removed: ${path} (${describe(x)})`, base: x });
    } else if (x && y) {
      if (x.kind !== y.kind) {
        changes.push({
          kind: "type-changed",
          path,
          text: `type changed: ${path}: ${x.kind} on the base, ${y.kind} with the patch`,
          base: x,
          patched: y,
        });
      }
      if (x.optional !== undefined && y.optional !== undefined && x.optional !== y.optional) {
        changes.push({
          kind: "optional-changed",
          path,
          text: `optional-ness changed: ${path}: ${x.optional ? "optional" : "required"} on the base, ${y.optional ? "optional" : "required"} with the patch`,
          base: x,
          patched: y,
        });
      }
      if (x.values && y.values) {
        const plus = y.values.filter((v) => !x.values?.includes(v));
        const minus = x.values.filter((v) => !y.values?.includes(v));
        if (plus.length || minus.length) {
          const parts = [
            ...(plus.length ? [`+${plus.join(" +")}`] : []),
            ...(minus.length ? [`-${minus.join(" -")}`] : []),
          ];
          changes.push({
            kind: "enum-values",
            path,
            text: `enum values: ${path}: ${parts.join(" ")}`,
            base: x,
            patched: y,
            valuesAdded: plus,
            valuesRemoved: minus,
          });
        }
      }
      const fx = (x.features ?? []).join(",");
      const fy = (y.features ?? []).join(",");
      if (fx !== fy) {
        changes.push({
          kind: "features-changed",
          path,
          text: `features changed: ${path}: [${fx}] on the base, [${fy}] with the patch`,
          base: x,
          patched: y,
        });
      }
    }
  }
  return dedupe(changes);
}

/** One change per definition: the first path reached is kept, the others counted. */
function dedupe(changes: SchemaChange[]): SchemaChange[] {
  const out: SchemaChange[] = [];
  const seen = new Map<string, SchemaChange>();
  for (const c of changes) {
    const where = c.patched?.definedIn ?? c.base?.definedIn;
    const detail = c.text.slice(c.text.indexOf(c.path) + c.path.length);
    const key =
      where === undefined ? undefined : `${c.kind}|${where}|${c.base?.definedIn ?? ""}|${detail}`;
    const first = key === undefined ? undefined : seen.get(key);
    if (first) {
      first.alsoAt = (first.alsoAt ?? 0) + 1;
      continue;
    }
    if (key !== undefined) seen.set(key, c);
    out.push(c);
  }
  for (const c of out) {
    if (c.alsoAt) c.text += ` (also at ${c.alsoAt} other path${c.alsoAt === 1 ? "" : "s"})`;
  }
  return out;
}
