// Everything both sides said during a migration, in arrival order, with times relative to the
// start of the pair: query-migrate and info migrate snapshots, QMP events, commands the harness
// sent. Suites assert over it; diagnostics and reports print it.

import type { MigrationInfo, QMPEvent } from "../qmp/qapi.ts";

export type Side = "source" | "destination";

export type TimelineEntry =
  /** `sentT`: when the harness sent the query (QEMU computed the reply between sentT and t). */
  | { t: number; side: Side; kind: "query-migrate"; data: MigrationInfo; sentT?: number }
  | { t: number; side: Side; kind: "info-migrate"; data: string }
  | { t: number; side: Side; kind: "event"; data: QMPEvent }
  | { t: number; side: Side; kind: "command"; data: { command: string; arguments?: unknown } }
  | { t: number; side: Side | "harness"; kind: "note"; data: string };

export interface HmpBracket {
  t: number;
  text: string;
  before: MigrationInfo;
  after: MigrationInfo;
  stable: boolean;
}

type Kind = TimelineEntry["kind"];
type DataOf<K extends Kind> = Extract<TimelineEntry, { kind: K }>["data"];

export class Timeline {
  readonly startedAt = Date.now();
  readonly entries: TimelineEntry[] = [];

  now(): number {
    return Date.now() - this.startedAt;
  }

  /** Records `data` as arrived now; `sentT`, for a reply, when its request went out. */
  record<K extends Kind>(side: Side | "harness", kind: K, data: DataOf<K>, sentT?: number): void {
    this.entries.push({
      t: this.now(),
      side,
      kind,
      data,
      ...(sentT === undefined ? {} : { sentT }),
    } as TimelineEntry);
  }

  /** Every entry of one kind from one side, oldest first. */
  of<K extends Kind>(side: Side, kind: K): { t: number; sentT?: number; data: DataOf<K> }[] {
    return this.entries
      .filter((e) => e.side === side && e.kind === kind)
      .map((e) => ({
        t: e.t,
        ...("sentT" in e && e.sentT !== undefined ? { sentT: e.sentT } : {}),
        data: e.data as DataOf<K>,
      }));
  }

  last<K extends Kind>(side: Side, kind: K): { t: number; data: DataOf<K> } | undefined {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i];
      if (e && e.side === side && e.kind === kind) return { t: e.t, data: e.data as DataOf<K> };
    }
    return undefined;
  }

  /**
   * Each info migrate of one side with the query-migrate replies read just before and just
   * after it (the harness snapshots in that order). `stable` when both replies say the same
   * status: then the HMP text describes that state.
   */
  hmpBrackets(side: Side): HmpBracket[] {
    const mine = this.entries.filter((e) => e.side === side);
    const out: HmpBracket[] = [];
    mine.forEach((e, i) => {
      const before = mine[i - 1];
      const after = mine[i + 1];
      if (e.kind !== "info-migrate") return;
      if (before?.kind !== "query-migrate" || after?.kind !== "query-migrate") return;
      out.push({
        t: e.t,
        text: e.data,
        before: before.data,
        after: after.data,
        stable: before.data.status === after.data.status,
      });
    });
    return out;
  }

  /** The MIGRATION event statuses of one side, in order. */
  migrationEvents(side: Side): string[] {
    return this.of(side, "event")
      .filter((e) => e.data.event === "MIGRATION")
      .map((e) => String(e.data.data?.status));
  }

  toJSON(): { startedAt: string; entries: TimelineEntry[] } {
    return { startedAt: new Date(this.startedAt).toISOString(), entries: this.entries };
  }
}
