// A QEMU binary's own QMP schema (`query-qmp-schema`): lookups that look at structure rather
// than version numbers. Type names are meaningless numbers, so a type such as MigrationInfo is
// found by walking from a command (query-migrate's ret-type), MigrationStats from its `ram`.

import { preview } from "../util/text.ts";
import type { SchemaInfo } from "./schema-info.ts";

/** An object member as the harness asks about it. */
export interface ObjectMember {
  name: string;
  type: string;
  optional: boolean;
  features: string[];
}

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
