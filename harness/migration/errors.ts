// What goes wrong around a migration, with enough context for a QEMU developer: which side,
// which phase, what QEMU reported (the diagnostics of both sides ride along).

import type { Side } from "./timeline.ts";

/** Something went wrong in a migration; says which side, which phase, what QEMU reported. */
export class MigrationError extends Error {
  override name = "MigrationError";
  constructor(
    message: string,
    readonly phase: string,
    readonly side: Side | undefined,
    readonly diagnostics: string,
    options?: ErrorOptions,
  ) {
    super(`${message}\n\n${diagnostics}`, options);
  }
}

/** A capability or parameter the QEMU under test does not know, or refused. */
export class MigrationConfigError extends Error {
  override name = "MigrationConfigError";
}
