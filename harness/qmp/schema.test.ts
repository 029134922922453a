import { existsSync, readdirSync, readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import {
  type MigrationFeatures,
  migrationFeatures,
  SOURCE_ONLY_RAM_STATS,
} from "./migration-features.ts";
import { QmpSchema } from "./schema.ts";
import type { SchemaInfo } from "./schema-info.ts";
import { MIGRATION_ROOTS, trimSchema } from "./schema-trim.ts";
import {
  formatViolations,
  type SchemaViolation,
  validateEventData,
  validateReply,
} from "./validate.ts";

const FIXTURES = new URL("../fixtures/qmp-schema/", import.meta.url);
const INFO_MIGRATE_FIXTURES = new URL("../fixtures/info-migrate/", import.meta.url);
const NOT_CAPTURED = "skipped: fixture not captured, run scripts/capture-qmp-schema.ts";

function loadInfo(version: string): SchemaInfo[] | undefined {
  const file = new URL(`${version}.json.gz`, FIXTURES);
  if (!existsSync(file)) return undefined;
  return JSON.parse(gunzipSync(readFileSync(file)).toString("utf8")) as SchemaInfo[];
}

function loadSchema(version: string): QmpSchema | undefined {
  const info = loadInfo(version);
  return info && QmpSchema.fromReply(info);
}

/** Captured schema versions, oldest first. */
function capturedVersions(): string[] {
  return readdirSync(FIXTURES)
    .filter((f) => /^\d+\.\d+\.json\.gz$/.test(f))
    .map((f) => f.replace(/\.json\.gz$/, ""))
    .sort((a, b) => {
      const [am = 0, an = 0] = a.split(".").map(Number);
      const [bm = 0, bn = 0] = b.split(".").map(Number);
      return am - bm || an - bn;
    });
}

interface CapturedReplies {
  qemu: string;
  replies: Record<string, unknown>;
}

function loadReplies(version: string): CapturedReplies | undefined {
  const file = new URL(`query-migrate-${version}.json`, FIXTURES);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as CapturedReplies) : undefined;
}

const clone = <T>(v: T): T => structuredClone(v);

const schema72 = loadSchema("7.2");
const replies72 = loadReplies("7.2");

/** What each release's schema must say, from qapi/migration.json history. */
const EXPECTED: Record<
  string,
  Partial<MigrationFeatures> & { skipped: boolean; newStatuses: string[] }
> = {
  "7.2": {
    topLevelRemaining: false,
    destinationRamStats: false,
    migrateHasChannels: false,
    migrateIncomingHasExitOnError: false,
    skipped: true,
    newStatuses: [],
  },
  "10.0": {
    topLevelRemaining: false,
    destinationRamStats: false,
    migrateHasChannels: true,
    migrateIncomingHasExitOnError: true,
    skipped: false,
    newStatuses: ["postcopy-recover-setup"],
  },
  "11.1": {
    topLevelRemaining: true,
    destinationRamStats: false,
    migrateHasChannels: true,
    migrateIncomingHasExitOnError: true,
    skipped: false,
    newStatuses: ["postcopy-recover-setup", "postcopy-device", "failing"],
  },
};

describe("migration features, answered by each captured schema's structure", () => {
  test("the 7.2 fixture is present (the installed QEMU; it anchors the tests below)", () => {
    expect(schema72).toBeDefined();
    expect(replies72).toBeDefined();
  });

  test("every captured version has expectations in this test", () => {
    for (const v of capturedVersions()) expect(Object.keys(EXPECTED)).toContain(v);
  });

  for (const [version, want] of Object.entries(EXPECTED)) {
    const schema = loadSchema(version);
    test.skipIf(!schema)(`${version}${schema ? "" : ` (${NOT_CAPTURED} for ${version})`}`, () => {
      if (!schema) return;
      const f = migrationFeatures(schema);
      const { skipped, newStatuses, ...flags } = want;
      expect(f).toMatchObject(flags);

      // The walk really reached MigrationInfo, MigrationStats, MigrationCapability, ...
      expect(f.migrationInfoMembers).toEqual(
        expect.arrayContaining(["status", "ram", "total-time"]),
      );
      expect(f.migrationStatuses).toEqual(
        expect.arrayContaining(["none", "setup", "active", "completed", "failed", "cancelled"]),
      );
      expect(f.capabilities).toEqual(
        expect.arrayContaining(["xbzrle", "events", "postcopy-ram", "multifd"]),
      );
      expect(f.parameters).toEqual(
        expect.arrayContaining(["max-bandwidth", "downtime-limit", "multifd-channels"]),
      );
      const stats = new Map(f.migrationStatsMembers.map((m) => [m.name, m.optional]));
      for (const m of ["transferred", "remaining", "total", "mbps", "page-size", "normal"]) {
        expect(stats.get(m), `MigrationStats.${m} mandatory`).toBe(false);
      }
      for (const m of SOURCE_ONLY_RAM_STATS) expect(stats.get(m), m).toBe(false);
      expect(stats.has("skipped")).toBe(skipped);
      for (const st of ["postcopy-recover-setup", "postcopy-device", "failing"]) {
        expect(f.migrationStatuses.includes(st), `status ${st}`).toBe(newStatuses.includes(st));
      }
    });
  }

  test("a 'remaining' member on MigrationInfo is what makes topLevelRemaining true", () => {
    if (!schema72) throw new Error("7.2 fixture missing");
    // Synthetic: the 7.2 schema plus the one member system-wide-remaining.patch adds.
    const info = clone(schema72.info);
    const mi = info.find((e) => e.name === schema72.typeOf("query-migrate", "ret"));
    if (mi?.["meta-type"] !== "object") throw new Error("MigrationInfo not found");
    mi.members.push({ name: "remaining", type: "int", default: null });
    expect(migrationFeatures(new QmpSchema(info)).topLevelRemaining).toBe(true);
  });
});

describe("QmpSchema", () => {
  test("fromReply takes the return value or the whole reply, and rejects junk", () => {
    if (!schema72) throw new Error("7.2 fixture missing");
    const wrapped = QmpSchema.fromReply({ return: schema72.info });
    expect(wrapped.hasCommand("query-migrate")).toBe(true);
    expect(() => QmpSchema.fromReply({ error: { class: "GenericError" } })).toThrow(
      /not a SchemaInfo array/,
    );
    expect(() => QmpSchema.fromReply([{ name: "x" }])).toThrow(/malformed SchemaInfo/);
  });

  test("commands, events and walks from them", () => {
    const s = schema72;
    if (!s) throw new Error("7.2 fixture missing");
    expect(s.hasCommand("query-migrate")).toBe(true);
    expect(s.hasCommand("no-such-command")).toBe(false);
    expect(s.command("query-migrate")?.retType).toMatch(/^\d+$/); // names are mangled
    expect(s.hasEvent("MIGRATION")).toBe(true);
    const info = s.typeOf("query-migrate", "ret");
    const ram = s.memberPath(info, ["ram"]);
    expect(ram).toBeDefined();
    expect(s.objectMembers(ram ?? "").find((m) => m.name === "mbps")).toMatchObject({
      type: "number",
      optional: false,
    });
    expect(s.member(info ?? "", "ram")?.optional).toBe(true);
    expect(s.enumValues(s.memberPath(info, ["status"]) ?? "")).toContain("postcopy-active");
    expect(s.enumValues("str")).toEqual([]);
    expect(s.objectMembers("no-such-type")).toEqual([]);
    const eventStatus = s.memberPath(s.eventArgType("MIGRATION"), ["status"]);
    expect(s.enumValues(eventStatus ?? "")).toContain("completed");
  });

  test("trimSchema keeps everything reachable from the migration commands, and no more", () => {
    if (!schema72) throw new Error("7.2 fixture missing");
    const trimmed = new QmpSchema(trimSchema(schema72.info, MIGRATION_ROOTS));
    expect(trimmed.info.length).toBeLessThan(schema72.info.length / 2);
    expect(migrationFeatures(trimmed)).toEqual(migrationFeatures(schema72));
    expect(trimmed.hasCommand("blockdev-add")).toBe(false);
    // Closed: every name a kept entity refers to is kept too.
    for (const e of trimmed.info) {
      const refs =
        e["meta-type"] === "command"
          ? [e["arg-type"], e["ret-type"]]
          : e["meta-type"] === "event"
            ? [e["arg-type"]]
            : e["meta-type"] === "array"
              ? [e["element-type"]]
              : e["meta-type"] === "object" || e["meta-type"] === "alternate"
                ? e.members.map((m) => m.type)
                : [];
      for (const r of refs) expect(trimmed.get(r), `${e.name} -> ${r}`).toBeDefined();
    }
    for (const r of Object.values(replies72?.replies ?? {})) {
      expect(validateReply(trimmed, "query-migrate", r)).toEqual([]);
    }
  });
});

describe("validateReply", () => {
  const s = schema72;
  const completed = replies72?.replies["source-completed"] as Record<string, unknown> | undefined;
  const ready = () => {
    if (!s || !completed) throw new Error("7.2 fixtures missing");
    return { s, reply: clone(completed) as Record<string, Record<string, unknown>> };
  };
  const only = (v: SchemaViolation[]) => {
    expect(v, formatViolations("query-migrate", v)).toHaveLength(1);
    return v[0];
  };

  test("real query-migrate replies captured from each QEMU validate clean against its schema", () => {
    let checked = 0;
    for (const version of capturedVersions()) {
      const schema = loadSchema(version);
      const captured = loadReplies(version);
      if (!schema || !captured) continue;
      expect(Object.keys(captured.replies)).toEqual(
        expect.arrayContaining(["source-active", "source-completed", "destination-listening"]),
      );
      for (const [label, reply] of Object.entries(captured.replies)) {
        const v = validateReply(schema, "query-migrate", reply);
        expect(v, `${version} ${label}\n${formatViolations("query-migrate", v)}`).toEqual([]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(5);
  });

  test.skipIf(!existsSync(INFO_MIGRATE_FIXTURES))(
    `info-migrate fixtures' qmp replies validate against their QEMU's schema${existsSync(INFO_MIGRATE_FIXTURES) ? "" : " (skipped: harness/fixtures/info-migrate/ not there)"}`,
    () => {
      const files = readdirSync(INFO_MIGRATE_FIXTURES).filter((f) => f.endsWith(".json"));
      let checked = 0;
      for (const f of files) {
        const fixture = JSON.parse(readFileSync(new URL(f, INFO_MIGRATE_FIXTURES), "utf8")) as {
          qmp?: unknown;
          qemu?: unknown;
        };
        const version = /^(\d+\.\d+)/.exec(String(fixture.qemu))?.[1];
        const schema = version && loadSchema(version);
        if (fixture.qmp === undefined || !schema) continue; // no schema captured for that QEMU
        const v = validateReply(schema, "query-migrate", fixture.qmp);
        expect(v, `${f}\n${formatViolations("query-migrate", v)}`).toEqual([]);
        checked++;
      }
      expect(checked).toBeGreaterThan(0);
    },
  );

  test("wrong JSON type: a string where MigrationStats.transferred is an int", () => {
    const { s, reply } = ready();
    reply.ram = { ...reply.ram, transferred: "12" };
    expect(only(validateReply(s, "query-migrate", reply))).toEqual({
      path: "ram.transferred",
      problem: "wrong JSON type",
      expected: "int",
      actual: "12",
    });
  });

  test("ints must be integers, numbers may be fractional", () => {
    const { s, reply } = ready();
    reply.ram = { ...reply.ram, normal: 1.5, mbps: 97.955404255319152 };
    expect(only(validateReply(s, "query-migrate", reply))).toMatchObject({
      path: "ram.normal",
      problem: "not an integer",
    });
    reply.ram = { ...reply.ram, normal: 1, mbps: "fast" };
    expect(only(validateReply(s, "query-migrate", reply))).toMatchObject({
      path: "ram.mbps",
      problem: "wrong JSON type",
      expected: "number",
    });
    reply.ram = { ...reply.ram, mbps: null };
    expect(only(validateReply(s, "query-migrate", reply))?.path).toBe("ram.mbps");
  });

  test("unknown member, at the top and nested", () => {
    const { s, reply } = ready();
    (reply as Record<string, unknown>)["remaining-bytes"] = 5;
    reply.ram = { ...reply.ram, "zero-pages": 3 };
    const v = validateReply(s, "query-migrate", reply);
    expect(v.map((x) => [x.path, x.problem])).toEqual([
      ["ram.zero-pages", "unknown member"],
      ["remaining-bytes", "unknown member"],
    ]);
    expect(v[1]?.expected).toContain("total-time");
  });

  test("missing mandatory member: ram without total", () => {
    const { s, reply } = ready();
    delete reply.ram?.total;
    expect(only(validateReply(s, "query-migrate", reply))).toEqual({
      path: "ram.total",
      problem: "missing mandatory member",
      expected: "int",
      actual: undefined,
    });
  });

  test("an integer beyond 2^53 is flagged (a wrapped uint64), QEMU's INT64_MAX for infinity is not", () => {
    const { s, reply } = ready();
    const r = reply as { ram: Record<string, unknown> } & Record<string, unknown>;
    r.ram.transferred = JSON.parse("18446744073709551611"); // 2^64 - 5, as QMP's JSON reads
    expect(only(validateReply(s, "query-migrate", reply))).toMatchObject({
      path: "ram.transferred",
      problem: expect.stringMatching(/^an integer beyond 2\^53/),
    });
    r.ram.transferred = 1;
    r["expected-downtime"] = JSON.parse("9223372036854775807"); // INT64_MAX: no bandwidth measured yet
    expect(validateReply(s, "query-migrate", reply)).toEqual([]);
  });

  test("bad enum value for status", () => {
    const { s, reply } = ready();
    (reply as Record<string, unknown>).status = "migrating";
    const v = only(validateReply(s, "query-migrate", reply));
    expect(v).toMatchObject({ path: "status", problem: "unknown enum value", actual: "migrating" });
    expect(v?.expected).toMatch(/^enum\(none\|setup\|/);
    (reply as Record<string, unknown>).status = 3;
    expect(only(validateReply(s, "query-migrate", reply))?.problem).toBe("wrong JSON type");
  });

  test("nested object of the wrong kind, arrays and their elements", () => {
    const { s, reply } = ready();
    (reply as Record<string, unknown>).ram = [1];
    (reply as Record<string, unknown>)["blocked-reasons"] = ["a", 3];
    (reply as Record<string, unknown>)["postcopy-vcpu-blocktime"] = "1,2";
    const v = validateReply(s, "query-migrate", reply);
    expect(v.map((x) => [x.path, x.problem, x.expected])).toEqual([
      ["ram", "wrong JSON type", expect.stringMatching(/^object\{transferred, /)],
      ["blocked-reasons[1]", "wrong JSON type", "str"],
      ["postcopy-vcpu-blocktime", "wrong JSON type", "array of int"],
    ]);
  });

  test("flat union: SocketAddress variants chosen by 'type'", () => {
    const { s } = ready();
    const check = (addr: unknown) =>
      validateReply(s, "query-migrate", { "socket-address": [addr] });
    expect(check({ type: "unix", path: "/x" })).toEqual([]);
    expect(check({ type: "inet", host: "::1", port: "4444" })).toEqual([]);
    expect(check({ type: "unix" }).map((x) => [x.path, x.problem])).toEqual([
      ["socket-address[0].path", "missing mandatory member"],
    ]);
    expect(check({ type: "inet", host: "h", port: "1", path: "/x" })).toMatchObject([
      { path: "socket-address[0].path", problem: "unknown member" },
    ]);
    expect(check({ type: "carrier-pigeon" })).toMatchObject([
      { path: "socket-address[0].type", problem: "unknown enum value" },
    ]);
  });

  test("alternates: a branch of the value's JSON kind must match", () => {
    if (!s) throw new Error("7.2 fixture missing");
    // Synthetic commands returning two real 7.2 alternates: StrOrNull (migrate-set-parameters'
    // tls-creds) and one with an object branch (BlockdevRef-like: object or str).
    const strOrNull = s.member(s.typeOf("migrate-set-parameters", "arg") ?? "", "tls-creds")?.type;
    const objOrStr = s.info.find(
      (e) =>
        e["meta-type"] === "alternate" &&
        e.members.some((m) => m.type === "str") &&
        e.members.some((m) => s.get(m.type)?.["meta-type"] === "object"),
    );
    if (!strOrNull || !objOrStr) throw new Error("alternates not found in the 7.2 schema");
    const t = new QmpSchema([
      ...s.info,
      { name: "x-str-or-null", "meta-type": "command", "arg-type": "0", "ret-type": strOrNull },
      { name: "x-obj-or-str", "meta-type": "command", "arg-type": "0", "ret-type": objOrStr.name },
    ]);
    expect(validateReply(t, "x-str-or-null", "creds0")).toEqual([]);
    expect(validateReply(t, "x-str-or-null", null)).toEqual([]);
    expect(validateReply(t, "x-str-or-null", 3)).toEqual([
      { path: "", problem: "wrong JSON type", expected: "alternate(str | null)", actual: 3 },
    ]);
    expect(validateReply(t, "x-obj-or-str", "node0")).toEqual([]);
    // An object goes to the object branch, whose own violations are reported.
    const v = validateReply(t, "x-obj-or-str", { "node-name": 7 });
    expect(v.map((x) => x.path)).toContain("node-name");
    expect(v.some((x) => x.problem === "missing mandatory member")).toBe(true);
  });

  test("array returns, unknown commands, event data", () => {
    const { s } = ready();
    expect(
      validateReply(s, "query-migrate-capabilities", [{ capability: "xbzrle", state: false }]),
    ).toEqual([]);
    expect(
      validateReply(s, "query-migrate-capabilities", [{ capability: "nope", state: "yes" }]).map(
        (x) => [x.path, x.problem],
      ),
    ).toEqual([
      ["[0].capability", "unknown enum value"],
      ["[0].state", "wrong JSON type"],
    ]);
    expect(validateReply(s, "migrate_cancel", {})).toEqual([]);
    expect(validateReply(s, "no-such-command", {})).toMatchObject([
      { problem: "command not in this QEMU's schema" },
    ]);
    expect(validateEventData(s, "MIGRATION", { status: "completed" })).toEqual([]);
    expect(validateEventData(s, "MIGRATION", { status: "done" })).toMatchObject([
      { path: "status", problem: "unknown enum value" },
    ]);
  });

  test("formatViolations names the command, the path, the expectation and what came", () => {
    const { s, reply } = ready();
    reply.ram = { ...reply.ram, transferred: "12" };
    delete reply.ram?.total;
    const text = formatViolations("query-migrate", validateReply(s, "query-migrate", reply));
    expect(text).toContain(
      "query-migrate reply does not match this QEMU's own schema (2 violations)",
    );
    expect(text).toContain('ram.transferred: wrong JSON type; expected int, got "12"');
    expect(text).toContain("ram.total: missing mandatory member; expected int, got nothing");
    expect(formatViolations("query-migrate", [])).toMatch(/matches/);
  });
});

describe("destination-ram-stats.patch, proven on a schema derived from a real one", () => {
  const newest = capturedVersions().at(-1) ?? "7.2";
  const real = loadSchema(newest);
  const example = JSON.parse(
    readFileSync(new URL("destination-ram-stats-example.json", FIXTURES), "utf8"),
  ) as { qmp: unknown };

  /**
   * SYNTHETIC: the newest captured schema with the patch's qapi/migration.json change applied:
   * the source-only MigrationStats members become optional. The patch is based on a tree where
   * 9.1 had already dropped `skipped`, so that is dropped too if this schema still has it.
   */
  function patched(schema: QmpSchema): QmpSchema {
    const info = clone(schema.info);
    const statsName = schema.memberPath(schema.typeOf("query-migrate", "ret"), ["ram"]);
    const stats = info.find((e) => e.name === statsName);
    if (stats?.["meta-type"] !== "object") throw new Error("MigrationStats not found");
    stats.members = stats.members.filter((m) => m.name !== "skipped");
    for (const m of stats.members) {
      if (SOURCE_ONLY_RAM_STATS.includes(m.name)) m.default = null;
    }
    return new QmpSchema(info);
  }
  function unpatched(schema: QmpSchema): QmpSchema {
    const info = clone(schema.info);
    const statsName = schema.memberPath(schema.typeOf("query-migrate", "ret"), ["ram"]);
    const stats = info.find((e) => e.name === statsName);
    if (stats?.["meta-type"] !== "object") throw new Error("MigrationStats not found");
    stats.members = stats.members.filter((m) => m.name !== "skipped");
    return new QmpSchema(info);
  }

  test(`derived from ${newest}: destinationRamStats is detected, and only there`, () => {
    if (!real) throw new Error(`${newest} fixture missing`);
    expect(migrationFeatures(real).destinationRamStats).toBe(false);
    const f = migrationFeatures(patched(real));
    expect(f.destinationRamStats).toBe(true);
    const optional = f.migrationStatsMembers.filter((m) => m.optional).map((m) => m.name);
    expect(optional.sort()).toEqual([...SOURCE_ONLY_RAM_STATS].sort());
  });

  test("partially optional source-only members are not the patch", () => {
    if (!real) throw new Error(`${newest} fixture missing`);
    const info = clone(real.info);
    const statsName = real.memberPath(real.typeOf("query-migrate", "ret"), ["ram"]);
    const stats = info.find((e) => e.name === statsName);
    if (stats?.["meta-type"] !== "object") throw new Error("MigrationStats not found");
    for (const m of stats.members) if (m.name === "dirty-sync-count") m.default = null;
    expect(migrationFeatures(new QmpSchema(info)).destinationRamStats).toBe(false);
  });

  test("the patch's own destination reply validates against the patched schema only", () => {
    if (!real) throw new Error(`${newest} fixture missing`);
    expect(validateReply(patched(real), "query-migrate", example.qmp)).toEqual([]);
    const v = validateReply(unpatched(real), "query-migrate", example.qmp);
    expect(v.every((x) => x.problem === "missing mandatory member")).toBe(true);
    expect(v.map((x) => x.path).sort()).toEqual(
      SOURCE_ONLY_RAM_STATS.map((m) => `ram.${m}`).sort(),
    );
  });

  test("a real source reply still validates after the patch (source output unchanged)", () => {
    if (!real) throw new Error(`${newest} fixture missing`);
    const captured = loadReplies(newest);
    const source = captured?.replies["source-completed"] as Record<string, unknown> | undefined;
    if (!source) throw new Error(`no captured query-migrate replies for ${newest}`);
    const ram = { ...(source.ram as Record<string, unknown>) };
    delete ram.skipped; // only present on pre-9.1 captures; the patched schema lacks it
    expect(validateReply(patched(real), "query-migrate", { ...source, ram })).toEqual([]);
  });
});
