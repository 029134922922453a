// Live progress of a migration. On a TTY one line is redrawn in place on every source snapshot;
// elsewhere (CI logs, pipes) a plain line is printed at most every `plainIntervalMs`. Status
// changes are always printed as their own line: `source migration status: active`.

import type { SideSnapshot } from "../migration/pair.ts";
import type { Side } from "../migration/timeline.ts";
import { progressLine } from "./format.ts";

export interface ProgressOutput {
  write(text: string): void;
  isTTY?: boolean;
  columns?: number;
}

export class Progress {
  private lastStatus: Partial<Record<Side, string>> = {};
  private live = "";
  private lastPlain = 0;
  private lastPlainStatus = "";
  private readonly started = Date.now();

  constructor(
    private readonly out: ProgressOutput,
    private readonly plainIntervalMs = 1000,
  ) {}

  get tty(): boolean {
    return this.out.isTTY === true;
  }

  /** Print a whole line, keeping the live line below it. */
  line(text: string): void {
    if (this.tty && this.live) this.out.write("\r\x1b[K");
    this.out.write(`${text}\n`);
    if (this.tty && this.live) this.out.write(this.live);
  }

  /** `passes`: MIGRATION_PASS events so far (shown when query-migrate has no dirty-sync-count). */
  snapshot(side: Side, snap: SideSnapshot, passes = 0): void {
    const status = snap.migration.status ?? "none";
    if (status !== this.lastStatus[side]) {
      this.lastStatus[side] = status;
      this.line(`${side} migration status: ${status}`);
    }
    if (side !== "source" || !snap.migration.ram) return;
    const text = progressLine(Date.now() - this.started, snap.migration, passes);
    if (this.tty) {
      const width = Math.max(20, (this.out.columns ?? 120) - 1);
      this.live = text.length > width ? `${text.slice(0, width - 1)}…` : text;
      this.out.write(`\r\x1b[K${this.live}`);
    } else if (
      Date.now() - this.lastPlain >= this.plainIntervalMs ||
      status !== this.lastPlainStatus
    ) {
      this.lastPlain = Date.now();
      this.lastPlainStatus = status;
      this.out.write(`progress: ${text}\n`);
    }
  }

  /** End the live line (leave its last state on screen). */
  finish(): void {
    if (this.tty && this.live) this.out.write("\n");
    this.live = "";
  }
}
