import { describe, expect, test } from "vitest";
import { QmpSchema } from "../qmp/schema.ts";
import type { SchemaInfo } from "../qmp/schema-info.ts";
import { schemaFixture } from "./fixtures.test-helpers.ts";
import { diffSchemas, flattenSchema } from "./schema-diff.ts";

describe("flattenSchema", () => {
  test("paths are named by commands and members, not by introspection's numbered types", () => {
    const flat = flattenSchema(schemaFixture("11.1"));
    expect(flat.get("command query-migrate: return.remaining")).toMatchObject({
      kind: "int",
      optional: true,
    });
    expect(flat.get("command query-migrate: return.ram.total")).toMatchObject({
      kind: "int",
      optional: false,
    });
    expect(flat.get("command query-migrate: return.status")?.values).toContain("postcopy-active");
    // Introspection names types "123"; no path may carry such a name.
    expect(
      [...flat.keys()].filter((k) => /[.:] ?\d+\b/.test(k.replace(/^\S+ \S+: /, "."))),
    ).toEqual([]);
  });
});

describe("diffSchemas", () => {
  test("identical schemas differ in nothing", () => {
    const s = schemaFixture("10.0");
    expect(diffSchemas(s, s)).toEqual([]);
  });

  test("10.0 -> 11.1 reports the system-wide remaining member as added, optional", () => {
    const changes = diffSchemas(schemaFixture("10.0"), schemaFixture("11.1"));
    const remaining = changes.find((c) => c.path === "command query-migrate: return.remaining");
    expect(remaining).toMatchObject({
      kind: "added",
      text: "added: command query-migrate: return.remaining (int, optional)",
    });
  });

  // A hand-made pair isolates each kind of change.
  const schema = (opts: { optional: boolean; values: string[]; extra?: boolean; type?: string }) =>
    new QmpSchema([
      { name: "int", "meta-type": "builtin", "json-type": "int" },
      { name: "str", "meta-type": "builtin", "json-type": "string" },
      { name: "q", "meta-type": "command", "arg-type": "0", "ret-type": "1" },
      { name: "0", "meta-type": "object", members: [] },
      {
        name: "1",
        "meta-type": "object",
        members: [
          { name: "status", type: "2" },
          opts.optional
            ? { name: "count", type: opts.type ?? "int", default: null }
            : { name: "count", type: opts.type ?? "int" },
          ...(opts.extra ? [{ name: "nested", type: "3", default: null }] : []),
        ],
      },
      { name: "2", "meta-type": "enum", members: opts.values.map((name) => ({ name })) },
      ...(opts.extra
        ? [
            {
              name: "3",
              "meta-type": "object",
              members: [
                { name: "a", type: "int" },
                { name: "b", type: "str" },
              ],
            } as SchemaInfo,
          ]
        : []),
    ] as SchemaInfo[]);

  test("optional-ness, type, enum values; an added subtree is one change", () => {
    const base = schema({ optional: false, values: ["none", "active"] });
    const patched = schema({
      optional: true,
      values: ["none", "active", "paused"],
      extra: true,
      type: "str",
    });
    expect(diffSchemas(base, patched).map((c) => c.text)).toEqual([
      "type changed: command q: return.count: int on the base, str with the patch",
      "optional-ness changed: command q: return.count: required on the base, optional with the patch",
      "added: command q: return.nested (object, optional)",
      "enum values: command q: return.status: +paused",
    ]);
    expect(diffSchemas(patched, base).map((c) => c.kind)).toEqual([
      "type-changed",
      "optional-changed",
      "removed",
      "enum-values",
    ]);
  });
});
