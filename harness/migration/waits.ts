// Named waits in qtest's spirit (wait_for_migration_status and friends), over the pair's
// snapshots: each says what it waits for, and ends early with the diagnostics on a state that
// cannot lead there.

import type { MigrationStatus, QMPEvent, StatusInfo } from "../qmp/qapi.ts";
import { timeoutMs } from "../util/timeouts.ts";
import type { MigrationPair, Snapshots, StatusWaitOptions, WaitOptions } from "./pair.ts";
import type { SideSnapshot } from "./result.ts";
import type { Side } from "./timeline.ts";

const SIDES = ["source", "destination"] as const;
const FAILURE_STATUSES: readonly MigrationStatus[] = ["failed", "cancelled"];

function statusOf(s: SideSnapshot): MigrationStatus {
  return s.migration.status ?? "none";
}

/** Each named side reaches one of its statuses. */
export function waitForStatuses(
  pair: MigrationPair,
  want: Partial<Record<Side, readonly MigrationStatus[]>>,
  options: StatusWaitOptions = {},
): Promise<Snapshots> {
  const entries = Object.entries(want) as [Side, readonly MigrationStatus[]][];
  const what = entries.map(([side, statuses]) => `${side} ${statuses.join("|")}`).join(" and ");
  const awaited = entries.flatMap(([, statuses]) => statuses);
  const failOn = options.failOn ?? FAILURE_STATUSES.filter((s) => !awaited.includes(s));
  return pair.waitUntil(
    what,
    (s) => entries.every(([side, statuses]) => statuses.includes(statusOf(s[side]))),
    {
      ...options,
      failOn: (s) => {
        for (const side of SIDES) {
          const status = statusOf(s[side]);
          if (!failOn.includes(status)) continue;
          const desc = s[side].migration["error-desc"];
          return `the ${side} reports migration status "${status}"${desc ? ` (${desc})` : ""}`;
        }
        return options.failWhen?.(s);
      },
    },
  );
}

/**
 * The source has done `n` dirty-bitmap syncs (qtest counts passes by dirty-sync-count) and is
 * still migrating: a migration provably iterating.
 */
export function waitForPasses(
  pair: MigrationPair,
  n: number,
  options: WaitOptions = {},
): Promise<Snapshots> {
  return pair.waitUntil(
    `source dirty-sync-count >= ${n}`,
    (s) => (s.source.migration.ram?.["dirty-sync-count"] ?? 0) >= n,
    {
      timeoutMs: options.timeoutMs ?? timeoutMs("hold"),
      failOn: (s) => {
        const status = statusOf(s.source);
        return ["completed", ...FAILURE_STATUSES].includes(status)
          ? `the source reached "${status}" after ${s.source.migration.ram?.["dirty-sync-count"] ?? 0} sync(s), before ${n}`
          : undefined;
      },
    },
  );
}

/** A QMP event `name` on `side` whose data satisfies `match`, recorded since `sinceT` ms. */
export async function waitForEvent(
  pair: MigrationPair,
  side: Side,
  name: string,
  match: (data: Record<string, unknown>) => boolean = () => true,
  options: WaitOptions & { sinceT?: number } = {},
): Promise<QMPEvent> {
  const found = () =>
    pair.timeline
      .of(side, "event")
      .find(
        (e) =>
          e.t >= (options.sinceT ?? 0) &&
          e.data.event === name &&
          match((e.data.data ?? {}) as Record<string, unknown>),
      )?.data;
  let event: QMPEvent | undefined;
  await pair.waitUntil(
    `${side} event ${name}`,
    () => {
      event = found();
      return event !== undefined;
    },
    { timeoutMs: options.timeoutMs ?? timeoutMs("event") },
  );
  return event as QMPEvent;
}

/** Poll query-status on one side until `ok` holds (bounded). */
export async function waitForVm(
  pair: MigrationPair,
  side: Side,
  ok: (s: StatusInfo) => boolean,
  what: string,
  limit = timeoutMs("vmState"),
): Promise<StatusInfo> {
  const deadline = Date.now() + limit;
  for (;;) {
    const status = await pair.machine(side).queryStatus();
    if (ok(status)) return status;
    if (Date.now() > deadline) {
      throw await pair.fail(
        `the ${side} VM did not become ${what} within ${limit} ms: query-status says ${JSON.stringify(status)}`,
        side,
      );
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}
