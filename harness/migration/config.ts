// Capabilities and parameters set the way qtest does and stricter: each name is checked against
// what that QEMU reports first (an unknown one is a clear error listing the known ones), and every
// value is read back after setting.

import { rawReplyText } from "../qmp/client.ts";
import type { MigrationParameters } from "../qmp/qapi.ts";
import { MigrationConfigError } from "./errors.ts";
import type { MigrationPair } from "./pair.ts";
import type { Side } from "./timeline.ts";

/** Set capabilities on one side after checking QEMU knows them, then read them back. */
export async function setCapabilities(
  pair: MigrationPair,
  side: Side,
  capabilities: Record<string, boolean>,
): Promise<void> {
  const m = pair.machine(side);
  const names = (await pair.queryCapabilities(side)).map((c) => c.capability);
  for (const name of Object.keys(capabilities)) {
    if (!names.includes(name)) {
      throw new MigrationConfigError(
        `unknown migration capability "${name}" on the ${side} (QEMU ${m.binary.version}); it knows: ${names.join(", ")}`,
      );
    }
  }
  const list = Object.entries(capabilities).map(([capability, state]) => ({ capability, state }));
  await pair.execute(side, "migrate-set-capabilities", { capabilities: list });
  const after = await pair.queryCapabilities(side);
  for (const { capability, state } of list) {
    const now = after.find((c) => c.capability === capability)?.state;
    if (now !== state) {
      throw new MigrationConfigError(
        `${side}: capability ${capability} was set to ${state} but query-migrate-capabilities reads back ${now}`,
      );
    }
  }
}

/** Set parameters on one side after checking QEMU knows them, then read them back. */
export async function setParameters(
  pair: MigrationPair,
  side: Side,
  parameters: MigrationParameters,
): Promise<void> {
  const m = pair.machine(side);
  const before = await pair.queryParameters(side);
  for (const name of Object.keys(parameters)) {
    if (!(name in before)) {
      throw new MigrationConfigError(
        `unknown migration parameter "${name}" on the ${side} (QEMU ${m.binary.version}); query-migrate-parameters has: ${Object.keys(before).join(", ")}`,
      );
    }
  }
  await pair.execute(side, "migrate-set-parameters", parameters);
  const after = await pair.queryParameters(side);
  const raw = rawReplyText(after);
  for (const [name, value] of Object.entries(parameters)) {
    const read = exactInteger(raw, name) ?? JSON.stringify(after[name]);
    if (read === JSON.stringify(value)) continue;
    const wrapped =
      typeof value === "number" && Number.isInteger(value) && value < 0
        ? (2n ** 64n + BigInt(value)).toString()
        : undefined;
    throw new MigrationConfigError(
      read === wrapped
        ? `${side}: parameter ${name} was set to ${value}, which QEMU took as ${read} (2^64 ${value}: it wraps a negative value of an unsigned parameter); give a value from 0 up`
        : `${side}: parameter ${name} was set to ${JSON.stringify(value)} but query-migrate-parameters reads back ${read}`,
    );
  }
}

/** The integer literal QEMU sent for a top-level member, exactly (also beyond 2^53). */
function exactInteger(raw: string | undefined, name: string): string | undefined {
  const escaped = name.replace(/[-/\\^$*+?.()|[\]{}]/g, "\\$&");
  return raw?.match(new RegExp(`"${escaped}":\\s*(-?\\d+)(?=[,}\\s])`))?.[1];
}
