// Flag parsing shared by the subcommands: node:util parseArgs, with errors that list what is
// valid instead of Node's terse ones.

import { type ParseArgsConfig, parseArgs } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;

export interface ParsedArgs<O extends OptionSpec> {
  values: ReturnType<typeof parseArgs<{ options: O; allowPositionals: true }>>["values"];
  positionals: string[];
}

/** Parse argv strictly; an unknown or malformed flag becomes a UsageError naming the valid ones. */
export function parseFlags<O extends OptionSpec>(
  command: string,
  argv: string[],
  options: O,
): ParsedArgs<O> {
  try {
    const r = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: r.values, positionals: r.positionals };
  } catch (error) {
    const e = error as Error & { code?: string };
    const valid = Object.entries(options)
      .map(
        ([name, o]) =>
          `--${name}${o.short ? `/-${o.short}` : ""}${o.type === "string" ? " VALUE" : ""}`,
      )
      .join(", ");
    const flag = /'([^']+)'/.exec(e.message)?.[1];
    if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      throw new UsageError(
        `${command}: unknown option ${flag ?? ""}; valid options: ${valid} (see ${command} --help)`,
      );
    }
    if (e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      throw new UsageError(`${command}: ${e.message.split("\n")[0]}; valid options: ${valid}`);
    }
    throw new UsageError(`${command}: ${e.message}`);
  }
}

/** A value that must be one of `allowed`. */
export function oneOf<T extends string>(
  flag: string,
  value: string | undefined,
  allowed: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`${flag} must be one of ${allowed.join(", ")}, not "${value}"`);
  }
  return value as T;
}

/** A non-negative integer flag ("1000000", "1e6" rejected: QEMU takes integers). */
export function integer(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) {
    throw new UsageError(`${flag} must be a non-negative integer, not "${value}"`);
  }
  return Number(value);
}

/** A non-negative decimal flag ("32", "0.5"; not "1e3", "-1", "NaN"), e.g. a rate in `unit`. */
export function nonNegativeNumber(
  flag: string,
  value: string | undefined,
  unit: string,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(value)) {
    throw new UsageError(`${flag} takes a non-negative number of ${unit}, not "${value}"`);
  }
  return Number(value);
}

/** "name=value" pairs; value parsed as JSON when it is a number, boolean or quoted string. */
export function keyValues(flag: string, items: string[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of items ?? []) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`${flag} takes NAME=VALUE, not "${item}"`);
    const value = item.slice(eq + 1);
    out[item.slice(0, eq)] = /^(-?\d+(\.\d+)?|true|false|".*")$/.test(value)
      ? JSON.parse(value)
      : value;
  }
  return out;
}

/** "name", "name=on", "name=off" capabilities. */
export function capabilities(items: string[] | undefined): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const item of items ?? []) {
    const [name, state = "on"] = item.split("=", 2);
    if (!name) throw new UsageError(`--capability takes NAME or NAME=on|off, not "${item}"`);
    if (!["on", "off", "true", "false"].includes(state)) {
      throw new UsageError(`--capability ${name}: state must be on or off, not "${state}"`);
    }
    out[name] = state === "on" || state === "true";
  }
  return out;
}
