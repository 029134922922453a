// A QEMU binary's own QMP schema (`query-qmp-schema`, qapi/introspect.json): feature probes that
// look at structure rather than version numbers, and a validator for replies.
//
// Introspection hides type names: every non-builtin type is named by a meaningless number ("140")
// and all integer types collapse to the builtin "int". So a type such as MigrationInfo is found
// by walking from a command (query-migrate's ret-type), MigrationStats from MigrationInfo's `ram`.

// ---------------------------------------------------------------------------------------------
// SchemaInfo, as introspect.json defines it

export type SchemaMetaType =
  | "builtin"
  | "enum"
  | "array"
  | "object"
  | "alternate"
  | "command"
  | "event";

/** JSONType: the wire type of a builtin. */
export type JSONType =
  | "string"
  | "number"
  | "int"
  | "boolean"
  | "null"
  | "object"
  | "array"
  | "value";

interface SchemaInfoBase {
  name: string;
  features?: string[];
}

export interface SchemaInfoBuiltin extends SchemaInfoBase {
  "meta-type": "builtin";
  "json-type": JSONType;
}

export interface SchemaInfoEnumMember {
  name: string;
  features?: string[];
}

export interface SchemaInfoEnum extends SchemaInfoBase {
  "meta-type": "enum";
  /** Since 6.2; `values` is deprecated from then on and may disappear. */
  members?: SchemaInfoEnumMember[];
  values?: string[];
}

export interface SchemaInfoArray extends SchemaInfoBase {
  "meta-type": "array";
  "element-type": string;
}

export interface SchemaInfoObjectMember {
  name: string;
  type: string;
  /** Present (and null) exactly when the member is optional. */
  default?: unknown;
  features?: string[];
}

export interface SchemaInfoObjectVariant {
  case: string;
  type: string;
}

export interface SchemaInfoObject extends SchemaInfoBase {
  "meta-type": "object";
  members: SchemaInfoObjectMember[];
  tag?: string;
  variants?: SchemaInfoObjectVariant[];
}

export interface SchemaInfoAlternate extends SchemaInfoBase {
  "meta-type": "alternate";
  members: { type: string }[];
}

export interface SchemaInfoCommand extends SchemaInfoBase {
  "meta-type": "command";
  "arg-type": string;
  "ret-type": string;
  "allow-oob"?: boolean;
}

export interface SchemaInfoEvent extends SchemaInfoBase {
  "meta-type": "event";
  "arg-type": string;
}

export type SchemaInfo =
  | SchemaInfoBuiltin
  | SchemaInfoEnum
  | SchemaInfoArray
  | SchemaInfoObject
  | SchemaInfoAlternate
  | SchemaInfoCommand
  | SchemaInfoEvent;

/** An object member as the harness asks about it. */
export interface ObjectMember {
  name: string;
  type: string;
  optional: boolean;
  features: string[];
}

// ---------------------------------------------------------------------------------------------
// The schema walker

export class QmpSchema {
  private readonly byName = new Map<string, SchemaInfo>();

  constructor(readonly info: SchemaInfo[]) {
    for (const entity of info) this.byName.set(entity.name, entity);
  }

  /** Accepts the `return` value of query-qmp-schema, or the whole `{"return": [...]}` reply. */
  static fromReply(reply: unknown): QmpSchema {
    const list =
      reply !== null && typeof reply === "object" && !Array.isArray(reply) && "return" in reply
        ? (reply as { return: unknown }).return
        : reply;
    if (!Array.isArray(list)) {
      throw new Error(`query-qmp-schema reply is not a SchemaInfo array: ${preview(reply)}`);
    }
    for (const entity of list) {
      if (
        entity === null ||
        typeof entity !== "object" ||
        typeof (entity as { name?: unknown }).name !== "string" ||
        typeof (entity as { "meta-type"?: unknown })["meta-type"] !== "string"
      ) {
        throw new Error(`query-qmp-schema reply holds a malformed SchemaInfo: ${preview(entity)}`);
      }
    }
    return new QmpSchema(list as SchemaInfo[]);
  }

  /** The entity with this (possibly mangled) name. */
  get(name: string): SchemaInfo | undefined {
    return this.byName.get(name);
  }

  command(name: string): { argType: string; retType: string; allowOob: boolean } | undefined {
    const c = this.byName.get(name);
    if (c?.["meta-type"] !== "command") return undefined;
    return { argType: c["arg-type"], retType: c["ret-type"], allowOob: c["allow-oob"] === true };
  }

  hasCommand(name: string): boolean {
    return this.command(name) !== undefined;
  }

  commands(): string[] {
    return this.info.filter((e) => e["meta-type"] === "command").map((e) => e.name);
  }

  /** The type name of an event's data, or undefined when this QEMU has no such event. */
  eventArgType(name: string): string | undefined {
    const e = this.byName.get(name);
    return e?.["meta-type"] === "event" ? e["arg-type"] : undefined;
  }

  hasEvent(name: string): boolean {
    return this.eventArgType(name) !== undefined;
  }

  /** The (mangled) name of a command's argument or return type. */
  typeOf(commandName: string, which: "ret" | "arg"): string | undefined {
    const c = this.command(commandName);
    return c && (which === "ret" ? c.retType : c.argType);
  }

  /** Non-variant members of an object type; empty when the name is not an object. */
  objectMembers(typeName: string): ObjectMember[] {
    const t = this.byName.get(typeName);
    if (t?.["meta-type"] !== "object") return [];
    return t.members.map((m) => ({
      name: m.name,
      type: m.type,
      optional: "default" in m,
      features: m.features ?? [],
    }));
  }

  member(typeName: string, memberName: string): ObjectMember | undefined {
    return this.objectMembers(typeName).find((m) => m.name === memberName);
  }

  /**
   * Follows member names from a type, looking through arrays: memberPath(mi, ["ram"]) is the
   * MigrationStats type; memberPath(capsArg, ["capabilities", "capability"]) the capability enum.
   */
  memberPath(typeName: string | undefined, path: readonly string[]): string | undefined {
    let current = typeName;
    for (const name of path) {
      if (current === undefined) return undefined;
      current = this.member(this.unwrapArray(current), name)?.type;
    }
    return current;
  }

  /** An array's element type, or the name itself for anything else. */
  unwrapArray(typeName: string): string {
    const t = this.byName.get(typeName);
    return t?.["meta-type"] === "array" ? t["element-type"] : typeName;
  }

  enumValues(typeName: string): string[] {
    const t = this.byName.get(typeName);
    if (t?.["meta-type"] !== "enum") return [];
    return t.members ? t.members.map((m) => m.name) : (t.values ?? []);
  }

  /** A readable description of a type, since its name says nothing. */
  describe(typeName: string): string {
    const t = this.byName.get(typeName);
    if (!t) return `<unknown type ${typeName}>`;
    switch (t["meta-type"]) {
      case "builtin":
        return t.name;
      case "enum": {
        const values = this.enumValues(typeName);
        const shown = values.slice(0, 8).join("|");
        return `enum(${shown}${values.length > 8 ? `|…${values.length - 8} more` : ""})`;
      }
      case "array":
        return `array of ${this.describe(t["element-type"])}`;
      case "object": {
        const names = t.members.map((m) => m.name);
        const shown = names.slice(0, 6).join(", ");
        return `object{${shown}${names.length > 6 ? ", …" : ""}}`;
      }
      case "alternate":
        return `alternate(${t.members.map((m) => this.describe(m.type)).join(" | ")})`;
      default:
        return t["meta-type"];
    }
  }
}

function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// Trimming, for fixtures too large to keep whole

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

// ---------------------------------------------------------------------------------------------
// Migration feature probes

/** MigrationStats members that only make sense on the source (destination-ram-stats.patch). */
export const SOURCE_ONLY_RAM_STATS: readonly string[] = [
  "dirty-sync-count",
  "precopy-bytes",
  "downtime-bytes",
  "postcopy-bytes",
  "multifd-bytes",
  "postcopy-requests",
  "dirty-sync-missed-zero-copy",
  "dirty-pages-rate",
];

export interface MigrationFeatures {
  /** MigrationInfo has a top-level `remaining` (system-wide-remaining patch, 11.1). */
  topLevelRemaining: boolean;
  /**
   * The source-only MigrationStats members are optional, as destination-ram-stats.patch makes
   * them, so a destination may report `ram` without them.
   */
  destinationRamStats: boolean;
  migrationInfoMembers: string[];
  migrationStatsMembers: { name: string; optional: boolean }[];
  /** Values of MigrationCapability, via migrate-set-capabilities' argument. */
  capabilities: string[];
  /** Members of migrate-set-parameters' argument. */
  parameters: string[];
  /** Values of MigrationStatus, via MigrationInfo's `status`. */
  migrationStatuses: string[];
  migrateHasChannels: boolean;
  migrateIncomingHasExitOnError: boolean;
}

export function migrationFeatures(schema: QmpSchema): MigrationFeatures {
  const info = schema.typeOf("query-migrate", "ret");
  const infoMembers = info ? schema.objectMembers(info) : [];
  const stats = schema.memberPath(info, ["ram"]);
  const statsMembers = stats ? schema.objectMembers(stats) : [];
  const sourceOnly = statsMembers.filter((m) => SOURCE_ONLY_RAM_STATS.includes(m.name));
  const capability = schema.memberPath(schema.typeOf("migrate-set-capabilities", "arg"), [
    "capabilities",
    "capability",
  ]);
  const status = schema.memberPath(info, ["status"]);
  const params = schema.typeOf("migrate-set-parameters", "arg");
  const hasArg = (command: string, member: string) => {
    const arg = schema.typeOf(command, "arg");
    return arg !== undefined && schema.member(arg, member) !== undefined;
  };
  return {
    topLevelRemaining: infoMembers.some((m) => m.name === "remaining"),
    destinationRamStats: sourceOnly.length > 0 && sourceOnly.every((m) => m.optional),
    migrationInfoMembers: infoMembers.map((m) => m.name),
    migrationStatsMembers: statsMembers.map(({ name, optional }) => ({ name, optional })),
    capabilities: capability ? schema.enumValues(capability) : [],
    parameters: params ? schema.objectMembers(params).map((m) => m.name) : [],
    migrationStatuses: status ? schema.enumValues(status) : [],
    migrateHasChannels: hasArg("migrate", "channels"),
    migrateIncomingHasExitOnError: hasArg("migrate-incoming", "exit-on-error"),
  };
}

// ---------------------------------------------------------------------------------------------
// Reply validation

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

function checkBuiltin(
  jsonType: JSONType,
  value: unknown,
  path: string,
  expected: string,
  out: SchemaViolation[],
): void {
  const kind = jsonKind(value);
  let ok: boolean;
  switch (jsonType) {
    case "string":
      ok = kind === "string";
      break;
    case "boolean":
      ok = kind === "boolean";
      break;
    case "null":
      ok = kind === "null";
      break;
    case "number":
      ok = kind === "number";
      break;
    case "int":
      if (kind === "number" && !Number.isInteger(value)) {
        out.push({ path, problem: "not an integer", expected, actual: value });
        return;
      }
      ok = kind === "number";
      break;
    case "object":
      ok = kind === "object";
      break;
    case "array":
      ok = kind === "array";
      break;
    case "value":
      ok = true;
      break;
    default:
      ok = false;
  }
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
    case "builtin":
      switch (t["json-type"]) {
        case "int":
        case "number":
          return ["number"];
        case "string":
          return ["string"];
        case "boolean":
          return ["boolean"];
        case "value":
          return ["string", "number", "boolean", "null", "object", "array"];
        default:
          return [t["json-type"]];
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
