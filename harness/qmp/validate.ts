// Replies and event data checked against the QEMU's own schema: unknown member, missing mandatory
// member, wrong JSON type, unknown enum value.

import { preview } from "../util/text.ts";
import type { QmpSchema } from "./schema.ts";
import type {
  JSONType,
  SchemaInfoAlternate,
  SchemaInfoObject,
  SchemaInfoObjectMember,
} from "./schema-info.ts";

export interface SchemaViolation {
  /** Where in the reply, e.g. "ram.dirty-sync-count" or "socket-address[0].port"; "" is the root. */
  path: string;
  problem: string;
  expected: string;
  actual: unknown;
}

/** Checks a command's `return` value against that command's ret-type in this QEMU's schema. */
export function validateReply(
  schema: QmpSchema,
  commandName: string,
  reply: unknown,
): SchemaViolation[] {
  const ret = schema.typeOf(commandName, "ret");
  if (ret === undefined) {
    return [
      {
        path: "",
        problem: "command not in this QEMU's schema",
        expected: commandName,
        actual: reply,
      },
    ];
  }
  const out: SchemaViolation[] = [];
  checkValue(schema, ret, reply, "", out);
  return out;
}

/** Same as validateReply, for an event's `data`. */
export function validateEventData(
  schema: QmpSchema,
  eventName: string,
  data: unknown,
): SchemaViolation[] {
  const arg = schema.eventArgType(eventName);
  if (arg === undefined) {
    return [
      { path: "", problem: "event not in this QEMU's schema", expected: eventName, actual: data },
    ];
  }
  const out: SchemaViolation[] = [];
  checkValue(schema, arg, data ?? {}, "", out);
  return out;
}

export function formatViolations(command: string, violations: readonly SchemaViolation[]): string {
  if (violations.length === 0) return `${command} reply matches this QEMU's schema`;
  const lines = violations.map(
    (v) =>
      `  ${v.path || "(reply)"}: ${v.problem}; expected ${v.expected}, got ${v.actual === undefined ? "nothing" : preview(v.actual)}`,
  );
  const n = violations.length;
  return [
    `${command} reply does not match this QEMU's own schema (${n} violation${n === 1 ? "" : "s"}):`,
    ...lines,
  ].join("\n");
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function join(path: string, member: string): string {
  return path ? `${path}.${member}` : member;
}

function checkValue(
  schema: QmpSchema,
  typeName: string,
  value: unknown,
  path: string,
  out: SchemaViolation[],
): void {
  const t = schema.get(typeName);
  if (!t) {
    out.push({ path, problem: "schema names an unknown type", expected: typeName, actual: value });
    return;
  }
  const expected = () => schema.describe(typeName);
  const wrongType = () =>
    out.push({ path, problem: "wrong JSON type", expected: expected(), actual: value });
  switch (t["meta-type"]) {
    case "builtin":
      checkBuiltin(t["json-type"], value, path, expected(), out);
      return;
    case "enum": {
      if (typeof value !== "string") return void wrongType();
      if (!schema.enumValues(typeName).includes(value)) {
        out.push({ path, problem: "unknown enum value", expected: expected(), actual: value });
      }
      return;
    }
    case "array": {
      if (!Array.isArray(value)) return void wrongType();
      value.forEach((element, i) => {
        checkValue(schema, t["element-type"], element, `${path}[${i}]`, out);
      });
      return;
    }
    case "object": {
      if (jsonKind(value) !== "object") return void wrongType();
      checkObject(schema, t, value as Record<string, unknown>, path, out);
      return;
    }
    case "alternate":
      checkAlternate(schema, t, value, path, out);
      return;
    default:
      out.push({
        path,
        problem: `schema names a ${t["meta-type"]} where a type belongs`,
        expected: typeName,
        actual: value,
      });
  }
}

/** The JSON kinds on the wire: a `value` may be any of them; an unknown json-type is none. */
/** 9223372036854775807 as JSON.parse reads it. */
const INT64_MAX_AS_READ = 2 ** 63;

const WIRE_KINDS: readonly string[] = ["string", "number", "boolean", "null", "object", "array"];

function checkBuiltin(
  jsonType: JSONType,
  value: unknown,
  path: string,
  expected: string,
  out: SchemaViolation[],
): void {
  if (jsonType === "value") return;
  const kind = jsonKind(value);
  if (jsonType === "int" && kind === "number" && !Number.isInteger(value)) {
    out.push({ path, problem: "not an integer", expected, actual: value });
    return;
  }
  // Above 2^53 a JSON number no longer reads back exactly as a JS number: no comparison of it
  // could be trusted, and no real byte or page count of a migration gets there (8 PiB). INT64_MAX
  // (read as 2^63) is QEMU's "infinite": expected-downtime before any bandwidth was measured.
  if (
    jsonType === "int" &&
    kind === "number" &&
    !Number.isSafeInteger(value) &&
    value !== INT64_MAX_AS_READ
  ) {
    out.push({
      path,
      problem:
        "an integer beyond 2^53 (a wrapped negative or an overflow?), not exactly representable",
      expected,
      actual: value,
    });
    return;
  }
  const wire = jsonType === "int" ? "number" : jsonType;
  const ok = WIRE_KINDS.includes(wire) && kind === wire;
  if (!ok) out.push({ path, problem: "wrong JSON type", expected, actual: value });
}

/** Base members plus, for a flat union, the members of the branch the tag selects (recursively). */
function effectiveMembers(
  schema: QmpSchema,
  t: SchemaInfoObject,
  value: Record<string, unknown>,
): SchemaInfoObjectMember[] {
  const members = [...t.members];
  if (t.tag !== undefined && t.variants) {
    const tag = value[t.tag];
    const branch = t.variants.find((v) => v.case === tag);
    const bt = branch && schema.get(branch.type);
    if (bt?.["meta-type"] === "object") members.push(...effectiveMembers(schema, bt, value));
  }
  return members;
}

function checkObject(
  schema: QmpSchema,
  t: SchemaInfoObject,
  value: Record<string, unknown>,
  path: string,
  out: SchemaViolation[],
): void {
  const members = effectiveMembers(schema, t, value);
  const known = new Map(members.map((m) => [m.name, m]));
  for (const m of members) {
    if (!(m.name in value)) {
      if (!("default" in m)) {
        out.push({
          path: join(path, m.name),
          problem: "missing mandatory member",
          expected: schema.describe(m.type),
          actual: undefined,
        });
      }
      continue;
    }
    checkValue(schema, m.type, value[m.name], join(path, m.name), out);
  }
  for (const [name, v] of Object.entries(value)) {
    if (!known.has(name)) {
      out.push({
        path: join(path, name),
        problem: "unknown member",
        expected: `one of ${[...known.keys()].join(", ") || "no members"}`,
        actual: v,
      });
    }
  }
}

/** The JSON kinds a value of this type may take on the wire. */
function wireKinds(schema: QmpSchema, typeName: string): string[] {
  const t = schema.get(typeName);
  switch (t?.["meta-type"]) {
    case "builtin": {
      const j = t["json-type"];
      return j === "value" ? [...WIRE_KINDS] : [j === "int" ? "number" : j];
    }
    case "enum":
      return ["string"];
    case "array":
      return ["array"];
    case "object":
      return ["object"];
    case "alternate":
      return t.members.flatMap((m) => wireKinds(schema, m.type));
    default:
      return [];
  }
}

function checkAlternate(
  schema: QmpSchema,
  t: SchemaInfoAlternate,
  value: unknown,
  path: string,
  out: SchemaViolation[],
): void {
  // QAPI alternates are told apart by JSON kind, so only branches of the value's kind can match.
  const kind = jsonKind(value);
  const candidates = t.members.filter((m) => wireKinds(schema, m.type).includes(kind));
  if (candidates.length === 0) {
    out.push({
      path,
      problem: "wrong JSON type",
      expected: schema.describe(t.name),
      actual: value,
    });
    return;
  }
  let first: SchemaViolation[] | undefined;
  for (const m of candidates) {
    const attempt: SchemaViolation[] = [];
    checkValue(schema, m.type, value, path, attempt);
    if (attempt.length === 0) return;
    first ??= attempt;
  }
  out.push(...(first ?? []));
}
